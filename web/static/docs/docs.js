// /docs: Swagger UI (the flask-swagger-ui package's copy, served from /docs/swagger-ui/, no CDN)
// over /openapi.json. An external script, so the page's CSP allows no inline script.
"use strict";

window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  docExpansion: "list",
  defaultModelRendering: "example",
  defaultModelsExpandDepth: 0,
  persistAuthorization: false,
  tryItOutEnabled: false,
});
