// inrgan viewer: a Leaflet map (CRS.Simple) whose tiles the server renders at each zoom's density.
// At zoom 0 the training box is one 256-pixel tile, (0, 0); tiles outside it are the extrapolation.
"use strict";

const TILE = 256;
const state = { seed: 0, psi: 1, cls: null, seed2: null, t: 0, space: "w" };
let info = null;
let layer = null;
const map = L.map("map", { crs: L.CRS.Simple, minZoom: -2, maxZoom: 16, zoomSnap: 1 });

function viewQuery() {
  const q = new URLSearchParams({ seed: state.seed, psi: state.psi });
  if (state.cls !== null) q.set("class", state.cls);
  if (state.seed2 !== null && state.t > 0) {
    q.set("seed2", state.seed2);
    q.set("t", state.t);
    q.set("space", state.space);
  }
  return q.toString();
}

function tileUrl() {
  return `/api/tile?z={z}&x={x}&y={y}&size=${TILE}&${viewQuery()}`;
}

function redraw() {
  layer.setUrl(tileUrl());
  gallery();  // the strip follows the truncation and the class; the server caches it
}

// The map's point (lng, -lat) at zoom 0 is a pixel of the training box's 256 x 256 tile.
function toFrame(latlng) {
  const [x0, y0, x1, y1] = info.bbox;
  return [x0 + (latlng.lng / TILE) * (x1 - x0), y0 + (-latlng.lat / TILE) * (y1 - y0)];
}

function download() {
  const b = map.getBounds();
  const [fx0, fy0] = toFrame(b.getNorthWest());
  const [fx1, fy1] = toFrame(b.getSouthEast());
  const size = map.getSize();
  const width = Math.max(16, Math.min(4096, Number(document.getElementById("export-width").value) || 1024));
  const height = Math.max(1, Math.round((width * size.y) / size.x));
  const q = `x0=${fx0}&y0=${fy0}&x1=${fx1}&y1=${fy1}&width=${width}&height=${height}&${viewQuery()}`;
  window.location.href = `/api/export?${q}`;
}

function gallery() {
  // one strip of 24 seeds, rendered by the server in one batch; each thumbnail shows its part of it
  const box = document.getElementById("gallery");
  const count = 24, px = 56;
  const src = `/api/gallery?first=0&count=${count}&size=64&psi=${state.psi}` + (state.cls !== null ? `&class=${state.cls}` : "");
  box.replaceChildren();
  for (let s = 0; s < count; s++) {
    const thumb = document.createElement("div");
    thumb.className = "thumb" + (s === state.seed ? " chosen" : "");
    thumb.dataset.seed = s;
    thumb.title = `seed ${s}`;
    thumb.style.backgroundImage = `url("${src}")`;
    thumb.style.backgroundSize = `${count * px}px ${px}px`;
    thumb.style.backgroundPosition = `${-s * px}px 0`;
    thumb.onclick = () => { state.seed = s; redraw(); };
    box.appendChild(thumb);
  }
}

function bind(id, key, parse, outputId) {
  const el = document.getElementById(id);
  el.addEventListener("input", () => {
    state[key] = parse(el.value);
    if (outputId) document.getElementById(outputId).textContent = Number(el.value).toFixed(2);
    redraw();
  });
}

async function start() {
  info = await (await fetch("/api/info")).json();
  document.getElementById("model").textContent =
    `${info.resolution}×${info.resolution}, ${info.channels} channel(s)` +
    (info.classes.length ? `, ${info.classes.length} classes` : "");
  if (info.classes.length) {
    state.cls = 0;
    const select = document.getElementById("class");
    info.classes.forEach((name, i) => select.add(new Option(name, i)));
    document.getElementById("class-label").hidden = false;
    bind("class", "cls", Number);
  }
  bind("psi", "psi", Number, "psi-value");
  bind("t", "t", Number, "t-value");
  bind("seed2", "seed2", Number);
  bind("space", "space", String);
  state.seed2 = Number(document.getElementById("seed2").value);
  document.getElementById("download").onclick = download;
  layer = L.tileLayer(tileUrl(), { tileSize: TILE, minZoom: -2, maxZoom: 16, minNativeZoom: 0, maxNativeZoom: info.max_zoom, noWrap: true });
  layer.addTo(map);
  map.fitBounds([[-TILE, 0], [0, TILE]]);  // the training box, whole
  gallery();
  window.inrganViewer = { map, layer, state, redraw };
}

start();
