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
// 2. Each bundle in embed-amd.js loads its Font Awesome fonts relative to
//    the URL that RequireJS gives its module (by default in the page's own
//    folder); map the module names so that URL is the folder holding the
//    fonts: @jupyter-widgets/base -> vendor/widgets/base.js, and
//    @jupyter-widgets/html-manager/dist/libembed-amd ->
//    vendor/widgets/libembed-amd.js.
// 3. The widgets typeset the LaTeX in their labels with MathJax 2's
//    MathJax.Hub.Queue, but the book loads MathJax 3, which has no Hub, so
//    each label would throw "Cannot read properties of undefined (reading
//    'Queue')". Give MathJax 3 that one call, mapped to typesetPromise.
(function () {
  "use strict";
  var script = document.currentScript;
  var folder = new URL("vendor/widgets/", script.src).href;
  script.setAttribute("data-jupyter-widgets-cdn", folder);
  script.setAttribute("data-jupyter-widgets-cdn-only", "");
  if (window.requirejs) {
    window.requirejs.config({
      paths: {
        "@jupyter-widgets": folder.replace(/\/$/, ""),
        "@jupyter-widgets/html-manager/dist": folder.replace(/\/$/, ""),
      },
    });
  }

  function addHub() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.startup || !mj.startup.promise) {
      return; // no MathJax 3 (yet), or a Hub already
    }
    mj.Hub = {
      Queue: function () {
        Array.prototype.forEach.call(arguments, function (job) {
          if (Array.isArray(job) && job[0] === "Typeset") {
            var element = job[2];
            mj.startup.promise.then(function () {
              return mj.typesetPromise(element ? [element] : undefined);
            });
          }
        });
      },
    };
  }
  // MathJax is loaded with defer: it is there at DOMContentLoaded, before the
  // widgets render (at load).
  document.addEventListener("DOMContentLoaded", addHub);
  window.addEventListener("load", addHub);
})();
