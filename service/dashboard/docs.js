// The API's documentation (/api/v1/docs): Swagger UI, vendored, from a file rather than an
// inline script so that the page runs under the dashboard's CSP (script-src 'self').
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.spec,
    domNode: root,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "BaseLayout",
    // no badge from the public validator: nothing leaves this origin
    validatorUrl: null,
    // "Authorize" with a token from `trainyard token create` is kept for the page's life only
    persistAuthorization: false,
  });
});
