"""Operations on jobs that the web app and the workers share: cancel, retry, replay, admission,
concurrency, ETA, the public representation, retention."""
