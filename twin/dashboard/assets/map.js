/* Map page (twin/dashboard/pages/map.py): frames live in the browser; these clientside callbacks
   switch them without a server round trip. No network: everything is in the dcc.Store. */
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  twinMap: {
    LAYERS: ["depth", "hazard", "closed", "vehicles", "people", "incidents"],
    /* slider value -> one image URL per time-varying layer, the clock label and the text summary */
    showFrame: function (i, frames) {
      const nu = window.dash_clientside.no_update;
      const L = window.dash_clientside.twinMap.LAYERS;
      if (!frames || !frames.n) {
        return L.map(() => nu).concat(["–", ""]);
      }
      const k = Math.max(0, Math.min(frames.n - 1, Math.round(i || 0)));
      const label = frames.labels[k];
      window.dash_clientside.twinMap.preload(frames, [k + 1, k + 2, k - 1]);
      const handle = document.querySelector("#map-time [role=slider]");
      if (handle) {   /* screen readers announce the clock time, not the frame number */
        handle.setAttribute("aria-valuetext", label);
        handle.setAttribute("aria-label", "time (local clock, Asia/Ho_Chi_Minh)");
      }
      return L.map((name) => (frames.images[name] ? frames.images[name][k] : nu)).concat([label, frames.summaries[k]]);
    },
    /* decode the neighbouring frames' images ahead of time (a small cache, not every frame: a
       48 h run has hundreds of images of a megapixel each) */
    _cache: new Map(),
    preload: function (frames, ks) {
      const tm = window.dash_clientside.twinMap;
      for (const k of ks) {
        if (k < 0 || k >= frames.n) continue;
        for (const name of tm.LAYERS) {
          const url = frames.images[name] ? frames.images[name][k] : null;
          if (!url || tm._cache.has(url)) continue;
          const im = new Image();
          im.src = url;
          if (im.decode) im.decode().catch(() => null);
          tm._cache.set(url, im);
        }
      }
      while (tm._cache.size > 48) tm._cache.delete(tm._cache.keys().next().value);
    },
    /* place labels by ground scale (Simple CRS: 2**zoom pixels per metre): none coarser than 11 m
       a pixel (hover or focus shows one), hospitals, shelters and dispatch from there, all finer than
       4 m a pixel */
    labelClass: function (zoom) {
      if (zoom === null || zoom === undefined) return "map-box";
      return "map-box" + (zoom >= -2 ? " labels-all" : zoom >= -3.5 ? " labels-major" : "");
    },
    /* play / pause; play from the last frame starts again at the first */
    togglePlay: function (n, disabled, i, imax) {
      const nu = window.dash_clientside.no_update;
      if (disabled) {
        const restart = (i || 0) >= (imax || 0);
        return [false, "⏸ Pause", restart ? 0 : nu];
      }
      return [true, "▶ Play", nu];
    },
    /* one frame forward; at the last frame play stops (no loop) */
    tick: function (n, i, imax) {
      const nu = window.dash_clientside.no_update;
      if (!imax) {
        return [nu, true, "▶ Play"];
      }
      const next = (i || 0) + 1;
      if (next >= imax) {
        return [imax, true, "▶ Play"];
      }
      return [next, nu, nu];
    }
  }
});

/* Place markers (basemap.place_markers): Enter or Space on a focused marker clicks it. Leaflet 1.9
   focuses markers (keyboard: true) but does not turn a key into a click; dash-leaflet passes this
   handler the marker's props (n_clicks, setProps). */
window.twinMap = Object.assign({}, window.twinMap, {
  placeKey: function (e, ctx) {
    const k = e.originalEvent ? e.originalEvent.key : null;
    if (k === "Enter" || k === " ") {
      e.originalEvent.preventDefault();
      ctx.setProps({n_clicks: (ctx.n_clicks || 0) + 1});
    }
  }
});
