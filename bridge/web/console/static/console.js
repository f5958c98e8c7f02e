/* storingsbridge console: live updates and live previews.
 *
 * Vendored on purpose: no build step, no CDN, no dependencies; works offline. Every page
 * works without it (previews have a button, pages can be reloaded); this only saves the
 * clicks.
 *
 * - <body data-live="overview">: opens the server-sent event stream /console/events and
 *   puts each fragment it sends ({"id": ..., "html": ...}) into the element with that id.
 * - <form data-preview="URL" data-preview-target="ID">: on typing (250 ms after the last
 *   key) POSTs the form to URL (with its CSRF token) and shows the answer in element ID.
 * - elements with data-nojs are hidden (the buttons that do the same without script).
 */
(function () {
  "use strict";

  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";

  var page = document.body.getAttribute("data-live");
  var stream = null;
  function listen() {
    if (page === null || !window.EventSource || stream !== null) { return; }
    stream = new EventSource("/console/events?pagina=" + encodeURIComponent(page));
    stream.onmessage = function (event) {
      var part;
      try { part = JSON.parse(event.data); } catch (e) { return; }
      var el = document.getElementById(part.id);
      if (el && el.innerHTML !== part.html) { el.innerHTML = part.html; }
    };
    stream.addEventListener("signedout", function () {
      stop();
      window.location.reload();
    });
  }
  function stop() {
    if (stream !== null) { stream.close(); stream = null; }
  }
  // A page kept in the back/forward cache must not keep its stream open: browsers allow
  // six connections to a host, and the seventh page would wait for ever.
  window.addEventListener("pagehide", stop);
  window.addEventListener("pageshow", listen);
  listen();

  Array.prototype.forEach.call(document.querySelectorAll("form[data-preview]"), function (form) {
    var url = form.getAttribute("data-preview");
    var target = document.getElementById(form.getAttribute("data-preview-target"));
    var timer = null;
    var asked = 0;
    function update() {
      var mine = ++asked;
      fetch(url, {method: "POST", body: new FormData(form), credentials: "same-origin",
                  headers: {"X-CSRF-Token": csrf}})
        .then(function (r) { return r.text(); })
        .then(function (html) {
          if (mine === asked && target) {
            target.innerHTML = html;
            target.setAttribute("data-fresh", String(mine));
          }
        })
        .catch(function () { /* offline or stopped: the button still works */ });
    }
    function later() {
      window.clearTimeout(timer);
      timer = window.setTimeout(update, 250);
    }
    form.addEventListener("input", later);
    form.addEventListener("change", later);
  });

  Array.prototype.forEach.call(document.querySelectorAll("[data-nojs]"), function (el) {
    el.hidden = true;
  });
}());
