// Keep the Jupyter widget manager (embed-amd.js) offline.
//
// Loaded on pages with widgets, after require.js and before embed-amd.js
// (see nb_ipywidgets_js in _config.yml). The vendored files live in
// _static/vendor/widgets/ beside this file's _static/ folder; their URL is
// computed here from this script's own URL, so it works from pages at any
// depth and under any base path, which a fixed attribute in _config.yml
// cannot do.
//
// 1. embed-amd.js bundles @jupyter-widgets/base, controls and output, so the
//    standard widgets need nothing else. It fetches any other widget module
//    from the URL in the attribute data-jupyter-widgets-cdn of a <script>
//    tag (jsDelivr by default): point it at the local folder, so a missing
//    module fails here instead of reaching out to the network.
// 2. embed-amd.js loads its Font Awesome fonts relative to the URL that
//    RequireJS gives its modules; map @jupyter-widgets/* to the local folder
//    so that URL is the folder that holds the fonts (not the page's folder).
(function () {
  "use strict";
  var script = document.currentScript;
  var folder = new URL("vendor/widgets/", script.src).href;
  script.setAttribute("data-jupyter-widgets-cdn", folder);
  script.setAttribute("data-jupyter-widgets-cdn-only", "");
  if (window.requirejs) {
    window.requirejs.config({
      paths: { "@jupyter-widgets": folder.replace(/\/$/, "") },
    });
  }
})();
