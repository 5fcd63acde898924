// sekisho console: starts the vendored asciinema-player on the replay page.
// Written for sekisho (Apache-2.0). No inline script: the page's CSP allows
// only files served from /assets/.
(function () {
  "use strict";
  var el = document.getElementById("player");
  if (!el || typeof AsciinemaPlayer === "undefined") {
    return;
  }
  var speedSelect = document.getElementById("speed");
  var idle = document.getElementById("idle-skip");
  var player = null;

  if (el.dataset.live) {
    player = AsciinemaPlayer.create(
      { driver: "eventsource", url: el.dataset.live, bufferTime: 0 },
      el,
      {
        fit: "width",
        autoPlay: true,
        terminalFontFamily: "'IPAexGothic', 'Noto Sans Mono CJK JP', monospace"
      }
    );
    window.sekishoPlayer = player;
    return;
  }

  function start(at) {
    if (player) {
      player.dispose();
    }
    el.textContent = "";
    var opts = {
      fit: "width",
      autoPlay: el.dataset.autoplay === "1",
      preload: true,
      startAt: at || 0,
      speed: speedSelect ? parseFloat(speedSelect.value) || 1 : 1,
      terminalFontFamily: "'IPAexGothic', 'Noto Sans Mono CJK JP', monospace",
      markers: JSON.parse(el.dataset.markers || "[]")
    };
    if (!idle || idle.checked) {
      opts.idleTimeLimit = 2;
    }
    player = AsciinemaPlayer.create(el.dataset.cast, el, opts);
    window.sekishoPlayer = player;
    // Opened at a moment (a keystroke log link, ?t=): play from there, as
    // a click in the log does. By marker when it is a typed line's
    // (markers move with idle skipping), else by time.
    if (at > 0) {
      var i = markerAt(opts.markers, at);
      player.seek(i >= 0 ? { marker: i } : at).then(function () { player.play(); });
    }
  }

  // The marker at `at` seconds (links give whole milliseconds, rounded
  // down), or -1.
  function markerAt(markers, at) {
    for (var i = 0; i < markers.length; i++) {
      var d = markers[i][0] - at;
      if (d >= 0 && d < 0.001) {
        return i;
      }
    }
    return -1;
  }

  function currentTime() {
    return player ? player.getCurrentTime() : 0;
  }

  if (speedSelect) {
    speedSelect.addEventListener("change", function () { start(currentTime()); });
  }
  if (idle) {
    idle.addEventListener("change", function () { start(currentTime()); });
  }
  // Keystroke log entries jump to their moment.
  document.querySelectorAll("a[data-seek]").forEach(function (a) {
    a.addEventListener("click", function (ev) {
      ev.preventDefault();
      // By marker: idle skipping shortens the timeline, markers move with it.
      var marker = parseInt(a.dataset.marker, 10);
      if (player && !isNaN(marker)) {
        player.seek({ marker: marker }).then(function () { player.play(); });
      }
    });
  });
  start(parseFloat(el.dataset.start) || 0);
})();
