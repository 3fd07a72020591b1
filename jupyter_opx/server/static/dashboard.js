// The business dashboard's one script (served by `opx serve` at /dashboard/static/dashboard.js).
//
// It follows the store's change stream (server-sent events, authenticated by the
// dashboard's HttpOnly cookie) and, when the change sequence moves past the one the
// figures were computed at, fetches the page's live part again and swaps it in: new
// feedback shows within a second, without a reload. The window selector (by hour, day,
// week) swaps the same part and updates the address. No dependency, no network
// beyond this server.
(function () {
  "use strict";
  var root = document.querySelector("main.opx-dashboard");
  if (!root) return;
  var base = root.getAttribute("data-base");
  var windowValue = root.getAttribute("data-window") || "1d";
  var live = document.getElementById("opx-live");
  var banner = document.getElementById("opx-banner");
  var latest = null; // the newest sequence the stream announced
  var busy = false;
  var again = false;
  var stream = null;

  function content() {
    return document.getElementById("opx-content");
  }

  function shownSeq() {
    var el = content();
    var v = el && el.getAttribute("data-seq");
    return v === null || v === undefined ? null : Number(v);
  }

  function setLive(state, text) {
    if (!live) return;
    live.setAttribute("data-state", state);
    live.textContent = text;
  }

  function clock() {
    var d = new Date();
    return d.toISOString().slice(11, 19) + " UTC";
  }

  function showBanner(text) {
    if (!banner) return;
    banner.textContent = text;
    banner.classList.toggle("opx-show", !!text);
  }

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    again = false;
    var url = base + "/content?window=" + encodeURIComponent(windowValue);
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        return r.text().then(function (text) {
          return { status: r.status, text: text };
        });
      })
      .then(function (r) {
        if (r.status === 200) {
          var holder = document.createElement("div");
          holder.innerHTML = r.text;
          var fresh = holder.querySelector("#opx-content");
          var old = content();
          if (fresh && old) old.replaceWith(fresh);
          root.setAttribute("data-window", windowValue);
          showBanner("");
          setLive("live", "Live · updated " + clock());
        } else if (r.status === 401 || r.status === 403) {
          showBanner(
            "This dashboard link no longer works (its access was revoked or changed). " +
              "Ask for a new link."
          );
          setLive("error", "Not authorized");
          if (stream) stream.close();
        } else {
          var doc = new DOMParser().parseFromString(r.text, "text/html");
          var p = doc.querySelector("main p");
          showBanner("The figures could not be refreshed: " + (p ? p.textContent : "HTTP " + r.status));
        }
      })
      .catch(function () {
        setLive("error", "Server unreachable, retrying…");
      })
      .then(function () {
        busy = false;
        var seq = shownSeq();
        if (again || (latest !== null && seq !== null && latest > seq)) refresh();
      });
  }

  function follow() {
    if (!window.EventSource) {
      setLive("error", "Live updates need a newer browser");
      return;
    }
    stream = new EventSource(base + "/stream");
    stream.addEventListener("open", function () {
      setLive("live", "Live · updated " + clock());
    });
    stream.addEventListener("change", function (event) {
      var seq = null;
      try {
        seq = JSON.parse(event.data).seq;
      } catch (e) {
        return;
      }
      latest = seq;
      var shown = shownSeq();
      if (shown === null || seq !== shown) refresh();
    });
    stream.addEventListener("error", function () {
      // EventSource reconnects by itself (the server asks for 1 s)
      setLive("error", "Reconnecting…");
    });
  }

  function selectWindow(value) {
    windowValue = value;
    var links = document.querySelectorAll(".opx-windows a[data-window]");
    for (var i = 0; i < links.length; i++) {
      var a = links[i];
      a.setAttribute("aria-current", a.getAttribute("data-window") === value ? "true" : "false");
    }
    if (window.history && history.replaceState) {
      history.replaceState(null, "", base + "?window=" + encodeURIComponent(value));
    }
    refresh();
  }

  document.addEventListener("click", function (event) {
    var a = event.target && event.target.closest && event.target.closest(".opx-windows a[data-window]");
    if (!a) return;
    event.preventDefault();
    selectWindow(a.getAttribute("data-window"));
  });

  follow();
})();
