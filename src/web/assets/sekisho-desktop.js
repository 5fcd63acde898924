// sekisho console: the desktop (RDP) player of the replay and live-watch
// pages. Written for sekisho (Apache-2.0); no build step, no inline script.
//
// The server decodes the recording and sends frames in its own small
// binary format (described in src/web/desktop.rs): records of changed
// rectangles as PNG, pointer positions, and an end mark. This file parses
// them, lets the browser decode the PNGs (createImageBitmap) and draws them
// on the #desktop canvas; the pointer goes on the #pointer canvas above it,
// so the desktop's pixels stay exactly those of the recording.
(function () {
  "use strict";
  var root = document.getElementById("desktop-player");
  if (!root) {
    return;
  }
  var canvas = document.getElementById("desktop");
  var ctx = canvas.getContext("2d");
  var overlay = document.getElementById("pointer");
  var octx = overlay.getContext("2d");
  var status = document.getElementById("desktop-status");

  var FRAME = 1, POINTER = 2, END = 3;

  // Parses the complete records in `bytes` (from `at`); returns them and
  // where the first incomplete one starts.
  function parse(bytes, at) {
    var v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    var out = [];
    var n = bytes.byteLength;
    for (;;) {
      var start = at;
      if (at + 5 > n) { break; }
      var kind = v.getUint8(at);
      var t = v.getUint32(at + 1, true);
      at += 5;
      if (kind === FRAME) {
        if (at + 7 > n) { at = start; break; }
        var rec = { kind: kind, t: t, w: v.getUint16(at, true), h: v.getUint16(at + 2, true),
                    full: v.getUint8(at + 4) === 1, regions: [] };
        var count = v.getUint16(at + 5, true);
        at += 7;
        var whole = true;
        for (var i = 0; i < count; i++) {
          if (at + 12 > n) { whole = false; break; }
          var len = v.getUint32(at + 8, true);
          if (at + 12 + len > n) { whole = false; break; }
          rec.regions.push({
            x: v.getUint16(at, true), y: v.getUint16(at + 2, true),
            png: new Blob([bytes.subarray(at + 12, at + 12 + len)], { type: "image/png" })
          });
          at += 12 + len;
        }
        if (!whole) { at = start; break; }
        out.push(rec);
      } else if (kind === POINTER) {
        if (at + 4 > n) { at = start; break; }
        out.push({ kind: kind, t: t, x: v.getUint16(at, true), y: v.getUint16(at + 2, true) });
        at += 4;
      } else if (kind === END) {
        out.push({ kind: kind, t: t });
      } else {
        throw new Error("unknown record " + kind);
      }
    }
    return { records: out, used: at };
  }

  function checkMagic(bytes) {
    return bytes.byteLength >= 4 && bytes[0] === 0x53 && bytes[1] === 0x4b &&
      bytes[2] === 0x46 && bytes[3] === 0x31;
  }

  // Decodes every PNG of `records` before any is drawn.
  function decode(records) {
    var jobs = [];
    records.forEach(function (r) {
      if (r.kind !== FRAME) { return; }
      r.regions.forEach(function (g) {
        jobs.push(createImageBitmap(g.png).then(function (b) { g.bitmap = b; g.png = null; }));
      });
    });
    return Promise.all(jobs).then(function () { return records; });
  }

  function drawPointer(x, y) {
    octx.clearRect(0, 0, overlay.width, overlay.height);
    octx.save();
    octx.translate(x, y);
    octx.beginPath();
    octx.moveTo(0, 0);
    octx.lineTo(0, 17);
    octx.lineTo(4, 13);
    octx.lineTo(7, 20);
    octx.lineTo(10, 19);
    octx.lineTo(7, 12);
    octx.lineTo(12, 12);
    octx.closePath();
    octx.fillStyle = "#ffffff";
    octx.strokeStyle = "#000000";
    octx.lineWidth = 1.5;
    octx.fill();
    octx.stroke();
    octx.restore();
    overlay.dataset.x = String(x);
    overlay.dataset.y = String(y);
  }

  function apply(r) {
    if (r.kind === FRAME) {
      if (r.full && (canvas.width !== r.w || canvas.height !== r.h)) {
        canvas.width = overlay.width = r.w;
        canvas.height = overlay.height = r.h;
        if (overlay.dataset.x) {
          drawPointer(+overlay.dataset.x, +overlay.dataset.y);
        }
      }
      r.regions.forEach(function (g) {
        if (g.bitmap) {
          ctx.drawImage(g.bitmap, g.x, g.y);
          g.bitmap.close();
          g.bitmap = null;
        }
      });
      root.dataset.frames = String((+root.dataset.frames || 0) + 1);
    } else if (r.kind === POINTER) {
      drawPointer(r.x, r.y);
    }
  }

  function say(text) {
    if (status) { status.textContent = text; }
  }

  if (root.dataset.live) {
    live(root.dataset.live);
    return;
  }
  replay();

  // Live watch: one streamed body; records are drawn as they come.
  function live(url) {
    var pending = new Uint8Array(0);
    var magic = false;
    var chain = Promise.resolve();
    fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (resp) {
      if (!resp.ok || !resp.body) { throw new Error("HTTP " + resp.status); }
      var reader = resp.body.getReader();
      function pump() {
        return reader.read().then(function (r) {
          if (r.done) {
            chain.then(function () { root.dataset.ended = "1"; say(root.dataset.endedText); });
            return;
          }
          var joined = new Uint8Array(pending.byteLength + r.value.byteLength);
          joined.set(pending, 0);
          joined.set(r.value, pending.byteLength);
          var at = 0;
          if (!magic) {
            if (joined.byteLength < 4) { pending = joined; return pump(); }
            if (!checkMagic(joined)) { throw new Error("not a frame stream"); }
            magic = true;
            at = 4;
          }
          var p = parse(joined, at);
          pending = joined.slice(p.used);
          var records = p.records;
          chain = chain.then(function () { return decode(records); }).then(function (recs) {
            recs.forEach(function (rec) {
              apply(rec);
              root.dataset.time = String(rec.t);
            });
          });
          return pump();
        });
      }
      return pump();
    }).catch(function (e) {
      say(root.dataset.error + " (" + e.message + ")");
    });
  }

  // Replay: stretches fetched as needed, played on a clock. A seek asks
  // for the frame at the new time alone (what the person waits for), then
  // playing goes on with stretches, each fetched while the last plays.
  function replay() {
    var SEEK = 0;
    var CHUNK = 5000;
    var url = root.dataset.frames;
    var duration = +root.dataset.duration || 0;
    var playBtn = document.getElementById("play");
    var speedSel = document.getElementById("speed");
    var slider = document.getElementById("seek");
    var clockEl = document.getElementById("clock");
    var s = { t: 0, playing: false, speed: 1, chunk: null, idx: 0, next: null, gen: 0, waiting: false };
    var last = null;

    function load(from, length) {
      var to = from + length;
      return fetch(url + "?from=" + Math.floor(from) + "&to=" + Math.floor(to),
        { credentials: "same-origin" }).then(function (resp) {
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.arrayBuffer();
      }).then(function (buf) {
        var bytes = new Uint8Array(buf);
        if (!checkMagic(bytes)) { throw new Error("not a frame stream"); }
        return decode(parse(bytes, 4).records);
      }).then(function (records) {
        return { from: from, to: to, records: records };
      });
    }

    function clock(ms) {
      var x = Math.floor(ms / 1000);
      function two(n) { return (n < 10 ? "0" : "") + n; }
      return two(Math.floor(x / 3600)) + ":" + two(Math.floor(x / 60) % 60) + ":" + two(x % 60);
    }

    function ui() {
      if (clockEl) { clockEl.textContent = clock(s.t); }
      if (slider && !slider.matches(":active")) { slider.value = String(Math.floor(s.t)); }
      if (playBtn) { playBtn.textContent = s.playing ? root.dataset.pause : root.dataset.play; }
      root.dataset.playing = s.playing ? "1" : "0";
    }

    function applyUntil(t) {
      var recs = s.chunk ? s.chunk.records : [];
      while (s.idx < recs.length && recs[s.idx].t <= t) {
        apply(recs[s.idx]);
        s.idx++;
      }
    }

    function prefetch() {
      if (!s.next && s.chunk && s.chunk.to < duration) {
        var gen = s.gen;
        s.next = load(s.chunk.to, CHUNK).then(function (c) { return gen === s.gen ? c : null; });
        s.next.catch(function () {});
      }
    }

    function fail(e) {
      s.playing = false;
      ui();
      say(root.dataset.error + " (" + e.message + ")");
    }

    // Shows the desktop at `ms` (a stretch starting there, its first frame
    // whole); resolves when it is drawn.
    function seek(ms) {
      ms = Math.max(0, Math.min(duration, Math.floor(ms)));
      var gen = ++s.gen;
      root.dataset.ready = "0";
      // The clock stands still until the new stretch is drawn.
      s.waiting = true;
      s.next = null;
      return load(ms, SEEK).then(function (c) {
        if (gen !== s.gen) { return; }
        s.chunk = c;
        s.idx = 0;
        s.t = ms;
        s.waiting = false;
        applyUntil(ms);
        root.dataset.time = String(ms);
        root.dataset.ready = "1";
        say("");
        prefetch();
        ui();
      }, fail);
    }

    function tick(now) {
      if (!s.playing) { last = null; return; }
      if (last !== null && !s.waiting) { s.t += (now - last) * s.speed; }
      last = now;
      if (s.t >= duration) {
        s.t = duration;
        applyUntil(duration);
        s.playing = false;
        ui();
        return;
      }
      if (s.chunk && s.t >= s.chunk.to) {
        applyUntil(s.chunk.to);
        s.t = s.chunk.to;
        if (!s.waiting) {
          s.waiting = true;
          prefetch();
          var gen = s.gen;
          s.next.then(function (c) {
            if (gen !== s.gen || !c) { return; }
            s.chunk = c;
            s.idx = 0;
            s.next = null;
            s.waiting = false;
            prefetch();
          }, fail);
        }
      } else {
        applyUntil(s.t);
      }
      root.dataset.time = String(Math.floor(s.t));
      ui();
      requestAnimationFrame(tick);
    }

    function play() {
      if (s.playing) { return; }
      if (s.t >= duration) { seek(0).then(play); return; }
      s.playing = true;
      last = null;
      ui();
      requestAnimationFrame(tick);
    }

    function pause() {
      s.playing = false;
      ui();
    }

    if (playBtn) {
      playBtn.addEventListener("click", function () { if (s.playing) { pause(); } else { play(); } });
    }
    if (speedSel) {
      speedSel.addEventListener("change", function () { s.speed = parseFloat(speedSel.value) || 1; });
    }
    if (slider) {
      slider.addEventListener("input", function () { if (clockEl) { clockEl.textContent = clock(+slider.value); } });
      slider.addEventListener("change", function () { seek(+slider.value); });
    }
    document.addEventListener("keydown", function (ev) {
      if (ev.target && /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(ev.target.tagName)) { return; }
      if (ev.key === " ") { ev.preventDefault(); if (s.playing) { pause(); } else { play(); } }
      if (ev.key === "ArrowLeft") { seek(s.t - 5000); }
      if (ev.key === "ArrowRight") { seek(s.t + 5000); }
    });
    document.querySelectorAll("a[data-seek]").forEach(function (a) {
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        seek(+a.dataset.seek).then(play);
      });
    });

    // For scripts and tests: the player's state and controls.
    window.sekishoDesktop = {
      seek: seek,
      play: play,
      pause: pause,
      time: function () { return s.t; }
    };
    seek(+root.dataset.start || 0);
  }
})();
