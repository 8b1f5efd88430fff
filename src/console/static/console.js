// Postern console: the only script. Everything works without it except the
// live rows of the messages list. No framework, no build step.
"use strict";
(function () {
  // Live rows: the list's <tbody data-events="/ui/events?..."> receives
  // server-rendered, escaped rows as they arrive (Server-Sent Events).
  var body = document.querySelector("tbody[data-events]");
  if (body && window.EventSource) {
    var status = document.getElementById("live-status");
    var source = new EventSource(body.getAttribute("data-events"));
    source.addEventListener("row", function (e) {
      var data = JSON.parse(e.data);
      if (document.getElementById("m-" + data.id)) return;
      var empty = document.getElementById("no-messages");
      if (empty) empty.remove();
      var tpl = document.createElement("template");
      tpl.innerHTML = data.html;
      var row = tpl.content.firstElementChild;
      if (!row) return;
      row.classList.add("new");
      body.insertBefore(row, body.firstElementChild);
    });
    source.addEventListener("open", function () { if (status) status.textContent = "Live: new messages appear here."; });
    source.addEventListener("error", function () { if (status) status.textContent = "Live updates paused; reconnecting…"; });
  }
  // "Load remote images": swap the preview frame's address in place (the
  // link itself reloads the page with ?remote=1, which works without JS).
  var load = document.querySelector("a[data-remote-images]");
  var frame = document.querySelector("iframe.preview");
  if (load && frame) {
    load.addEventListener("click", function (e) {
      e.preventDefault();
      frame.src = load.getAttribute("data-remote-images");
      load.setAttribute("aria-disabled", "true");
      load.textContent = "Remote images loaded";
    });
  }
})();
