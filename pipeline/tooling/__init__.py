"""What genline's developers and operators run beside the service: the bench, `genline dev`,
process helpers. The service never imports this package."""
