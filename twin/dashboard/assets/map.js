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
      const handle = document.querySelector("#map-time [role=slider]");
      if (handle) {   /* screen readers announce the clock time, not the frame number */
        handle.setAttribute("aria-valuetext", label);
        handle.setAttribute("aria-label", "time (local clock, Asia/Ho_Chi_Minh)");
      }
      return L.map((name) => (frames.images[name] ? frames.images[name][k] : nu)).concat([label, frames.summaries[k]]);
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
