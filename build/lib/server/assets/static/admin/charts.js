/* Tiny time-series line charts on <canvas>. No dependencies. */
(function () {
  "use strict";

  var COLORS = ["#2563eb", "#f97316"];

  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }

  function fmt(v) {
    if (v === null || v === undefined || isNaN(v)) return "–";
    if (Math.abs(v) >= 10000) return Math.round(v / 1000) + "k";
    return String(Math.round(v * 10) / 10);
  }

  /**
   * draw(canvas, times, series): times = [ms…]; series = [{label, values: [number|null…],
   * dashed?}], at most two. The x axis spans the times given; y starts at 0.
   */
  function draw(canvas, times, series) {
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || 300;
    var h = canvas.clientHeight || 140;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var style = getComputedStyle(document.body);
    var text = style.color;
    var left = 42, right = 8, top = 8, bottom = 18;
    var plotW = w - left - right, plotH = h - top - bottom;
    var max = 0;
    series.forEach(function (s) {
      s.values.forEach(function (v) { if (v !== null && v > max) max = v; });
    });
    max = niceMax(max * 1.1);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = text;
    ctx.globalAlpha = 0.25;
    ctx.strokeStyle = text;
    ctx.lineWidth = 1;
    for (var g = 0; g <= 2; g++) {
      var gy = top + plotH - (plotH * g) / 2;
      ctx.beginPath(); ctx.moveTo(left, gy); ctx.lineTo(left + plotW, gy); ctx.stroke();
    }
    ctx.globalAlpha = 0.8;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillText(fmt(max), left - 4, top);
    ctx.fillText(fmt(max / 2), left - 4, top + plotH / 2);
    ctx.fillText("0", left - 4, top + plotH);
    ctx.globalAlpha = 1;
    if (times.length < 1) return;
    var t0 = times[0], t1 = times[times.length - 1];
    var span = Math.max(1000, t1 - t0);
    ctx.textAlign = "left";
    ctx.textBaseline = "alphabetic";
    ctx.globalAlpha = 0.7;
    ctx.fillText("−" + Math.round(span / 1000) + " s", left, h - 4);
    ctx.textAlign = "right";
    ctx.fillText("now", left + plotW, h - 4);
    ctx.globalAlpha = 1;
    series.forEach(function (s, i) {
      ctx.strokeStyle = COLORS[i % COLORS.length];
      ctx.lineWidth = 2;
      ctx.setLineDash(s.dashed ? [5, 4] : []);
      ctx.beginPath();
      var pen = false;
      for (var k = 0; k < times.length; k++) {
        var v = s.values[k];
        if (v === null || v === undefined) { pen = false; continue; }
        var x = left + (plotW * (times[k] - t0)) / span;
        var y = top + plotH - (plotH * v) / max;
        if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        pen = true;
      }
      ctx.stroke();
    });
    ctx.setLineDash([]);
  }

  window.BOChart = { draw: draw };
})();
