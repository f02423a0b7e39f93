// Live updates for the Overview: the server sends the rendered live part as
// server-sent events; this swaps it in. No reload, no framework.
(function () {
  var live = document.querySelector("[data-live]");
  if (!live || !window.EventSource) return;
  var es = new EventSource(live.getAttribute("data-live"));
  es.addEventListener("overview", function (e) {
    live.innerHTML = e.data;
    live.classList.remove("stale");
  });
  es.onerror = function () { live.classList.add("stale"); };
})();
