// Starts Swagger UI on /docs (a file, not an inline script, so the page's CSP allows no inline
// script). validatorUrl null: Swagger UI would otherwise send the document to a third party.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
});
