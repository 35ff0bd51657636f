// inrgan's generator in the browser: model.onnx rendered by onnxruntime-web (WebAssembly), no server.
//
// The graph takes z [B, z_dim], truncation_psi [1 or B], bbox [4] (float64), height and width (int64
// scalars) and, for a conditional model, c [B, c_dim]; it gives image [B, C, height, width] in about [-1, 1].
// Every view is a box of the model's coordinate frame rendered at the canvas's pixel size, so zooming in
// renders the function again at the new density (detail at every scale) and panning past the training box
// renders the extrapolation.
//
// window.inrgan is the page's handle for scripts and tests: render({z, bbox, height, width, psi, c}) gives
// the raw pixels of any box; seedLatent(seed) the z of a seed; view, frames, and the controls' actions.

import * as ort from './ort/ort.wasm.bundle.min.mjs';

const MAX_ZOOM = 2 ** 20;  // float32 coordinates resolve the box's pixels down to about this scale
const MIN_ZOOM = 1 / 16;

// ---------------------------------------------------------------------------------------------
// Seeds: numpy's RandomState(seed).randn(n) (MT19937 and the polar Gaussian), as inrgan generate's latents.

export function seedLatent(seed, n) {
  const mt = new Uint32Array(624);
  mt[0] = seed >>> 0;
  for (let i = 1; i < 624; i++) {
    const p = mt[i - 1] ^ (mt[i - 1] >>> 30);
    mt[i] = (Math.imul(1812433253, p) + i) >>> 0;
  }
  let index = 624;
  const next = () => {
    if (index >= 624) {
      for (let k = 0; k < 624; k++) {
        const y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7fffffff);
        mt[k] = mt[(k + 397) % 624] ^ (y >>> 1) ^ ((y & 1) ? 0x9908b0df : 0);
      }
      index = 0;
    }
    let y = mt[index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  };
  const uniform = () => ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
  const z = new Float64Array(n);
  let spare = null;
  for (let i = 0; i < n; i++) {
    if (spare !== null) { z[i] = spare; spare = null; continue; }
    let x1, x2, r2;
    do {
      x1 = 2 * uniform() - 1;
      x2 = 2 * uniform() - 1;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1 || r2 === 0);
    const f = Math.sqrt(-2 * Math.log(r2) / r2);
    spare = f * x1;
    z[i] = f * x2;
  }
  return z;
}

// The great circle from a to b, norms interpolated linearly (inrgan.rendering.interpolate.slerp).
export function slerp(a, b, t, eps = 1e-7) {
  if (t === 0) return a.slice();
  if (t === 1) return b.slice();
  const norm = v => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  const na = norm(a), nb = norm(b);
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += (a[i] / (na + eps)) * (b[i] / (nb + eps));
  const omega = Math.acos(Math.min(1 - eps, Math.max(-1 + eps, dot)));
  const so = Math.sin(omega), wa = Math.sin((1 - t) * omega) / so, wb = Math.sin(t * omega) / so;
  const n = na + t * (nb - na);
  return a.map((x, i) => (wa * x / (na + eps) + wb * b[i] / (nb + eps)) * n);
}

// ---------------------------------------------------------------------------------------------
// The model.

const meta = await (await fetch('model.json')).json();
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
ort.env.wasm.wasmPaths = {wasm: new URL('./ort/ort-wasm-simd-threaded.wasm', import.meta.url).href};  // the glue is in the bundle
const session = await ort.InferenceSession.create('model.onnx', {executionProviders: ['wasm']});

let queue = Promise.resolve();  // one run of the session at a time

// Raw pixels of a render: z (B * z_dim numbers), bbox [x0, y0, x1, y1], height, width, psi (one or B),
// c (B * c_dim one-hot numbers, conditional models). Resolves to {data: Float32Array, dims, ms}.
export function render({z, bbox, height, width, psi = 1, c = null}) {
  const batch = z.length / meta.z_dim;
  const psis = Array.isArray(psi) ? psi : [psi];
  const feeds = {
    z: new ort.Tensor('float32', Float32Array.from(z), [batch, meta.z_dim]),
    truncation_psi: new ort.Tensor('float32', Float32Array.from(psis), [psis.length]),
    bbox: new ort.Tensor('float64', Float64Array.from(bbox), [4]),
    height: new ort.Tensor('int64', BigInt64Array.from([BigInt(height)]), []),
    width: new ort.Tensor('int64', BigInt64Array.from([BigInt(width)]), []),
  };
  if (meta.c_dim) feeds.c = new ort.Tensor('float32', Float32Array.from(c), [batch, meta.c_dim]);
  const run = queue.then(async () => {
    const t0 = performance.now();
    const out = await session.run(feeds);
    const image = out.image;
    return {data: image.data, dims: image.dims, ms: performance.now() - t0};
  });
  queue = run.catch(() => null);
  return run;
}

// ---------------------------------------------------------------------------------------------
// The page: a view (centre, zoom), the controls, and a render loop that keeps the latest view only.

const $ = id => document.getElementById(id);
const canvas = $('canvas');
const ctx = canvas.getContext('2d');
const [bx0, by0, bx1, by1] = meta.bbox;
const view = {cx: (bx0 + bx1) / 2, cy: (by0 + by1) / 2, zoom: 1};
const frames = [];
let shown = null;  // what the canvas shows: {bbox, z, psi, c, key}

const PREVIEW_MS = 250;  // while the view moves faster than this, frames render at half density
let lastInput = -Infinity, rapid = false, sharpen = null;

function canvasSize() {
  const dpr = window.devicePixelRatio || 1;
  const css = Number($('size').value) || 256;
  canvas.style.width = canvas.style.height = `${css}px`;
  return [Math.max(1, Math.round(css * dpr)), Math.max(1, Math.round(css * dpr))];
}

function viewBox() {
  const hx = (bx1 - bx0) / 2 / view.zoom, hy = (by1 - by0) / 2 / view.zoom;  // signed: the frame's y direction
  return [view.cx - hx, view.cy - hy, view.cx + hx, view.cy + hy];
}

function latent() {
  const a = seedLatent(Number($('seed').value) || 0, meta.z_dim);
  const t = Number($('t').value);
  return t > 0 ? slerp(a, seedLatent(Number($('seed2').value) || 0, meta.z_dim), t) : a;
}

function oneHot() {
  if (!meta.c_dim) return null;
  const c = new Array(meta.c_dim).fill(0);
  c[Number($('class').value) || 0] = 1;
  return c;
}

const scratch = document.createElement('canvas');

// The image [C, height, width] in [-1, 1] onto the canvas, enlarged (pixelated) where it is a preview.
function draw(data, height, width) {
  scratch.width = width;
  scratch.height = height;
  const g = scratch.getContext('2d');
  const img = g.createImageData(width, height);
  const plane = height * width, channels = meta.img_channels;
  for (let p = 0; p < plane; p++) {
    for (let k = 0; k < 3; k++) {
      const v = data[(channels === 1 ? 0 : k) * plane + p];
      img.data[4 * p + k] = Math.min(255, Math.max(0, Math.round((v + 1) * 127.5)));
    }
    img.data[4 * p + 3] = 255;
  }
  g.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(scratch, 0, 0, canvas.width, canvas.height);
}

let busy = false, wanted = false;

// A change of the view or the latent; `input` marks the user's (a drag, the wheel, a slider): inputs that
// follow each other within PREVIEW_MS render previews until they stop.
function requestRender(input = true) {
  if (input) {
    const now = performance.now();
    rapid = now - lastInput < PREVIEW_MS;
    lastInput = now;
  }
  wanted = true;
  if (!busy) renderLoop();
}

async function renderLoop() {
  busy = true;
  let preview = false;
  while (wanted) {
    wanted = false;
    const [height, width] = canvasSize();
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    preview = rapid && performance.now() - lastInput < PREVIEW_MS && shown !== null;
    const [h, w] = preview ? [Math.ceil(height / 2), Math.ceil(width / 2)] : [height, width];
    const t0 = performance.now();
    const job = {bbox: viewBox(), z: Array.from(latent()), psi: Number($('psi').value), c: oneHot(), height: h, width: w};
    try {
      const out = await render(job);
      draw(out.data, h, w);
      const ms = performance.now() - t0;  // the frame: the latent, the graph's run and the drawing
      frames.push({ms, run_ms: out.ms, height: h, width: w, preview});
      shown = {...job, preview, key: frames.length};
      $('status').textContent = `${w}x${h} in ${ms.toFixed(0)} ms${preview ? ' (preview)' : ''}`;
    } catch (e) {
      $('status').textContent = `render failed: ${e}`;
      console.error(e);
    }
  }
  busy = false;
  $('zoom-value').textContent = `x${view.zoom < 10 ? view.zoom.toFixed(2) : Math.round(view.zoom)} · box ` +
    viewBox().map(v => v.toPrecision(5)).join(', ');
  if (preview) {  // once the view stops moving, render it again at the canvas's full density
    clearTimeout(sharpen);
    sharpen = setTimeout(() => { rapid = false; requestRender(false); },
                         Math.max(0, lastInput + PREVIEW_MS - performance.now()));
  }
}

// Zoom by `factor` keeping the point under canvas pixel (px, py) in place (default: the centre).
function zoomAt(factor, px = null, py = null) {
  const target = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, view.zoom * factor));
  factor = target / view.zoom;
  const [x0, y0, x1, y1] = viewBox();
  const rect = canvas.getBoundingClientRect();
  const fx = px === null ? 0.5 : px / rect.width, fy = py === null ? 0.5 : py / rect.height;
  const ux = x0 + fx * (x1 - x0), uy = y0 + fy * (y1 - y0);
  view.cx = ux + (view.cx - ux) / factor;
  view.cy = uy + (view.cy - uy) / factor;
  view.zoom = target;
  requestRender();
}

// Pan by a drag of (dx, dy) CSS pixels.
function panBy(dx, dy) {
  const [x0, y0, x1, y1] = viewBox();
  const rect = canvas.getBoundingClientRect();
  view.cx -= dx / rect.width * (x1 - x0);
  view.cy -= dy / rect.height * (y1 - y0);
  requestRender();
}

function reset() {
  Object.assign(view, {cx: (bx0 + bx1) / 2, cy: (by0 + by1) / 2, zoom: 1});
  requestRender();
}

let drag = null;
canvas.addEventListener('pointerdown', e => {
  drag = [e.clientX, e.clientY];
  canvas.setPointerCapture(e.pointerId);
  canvas.classList.add('dragging');
});
canvas.addEventListener('pointermove', e => {
  if (!drag) return;
  panBy(e.clientX - drag[0], e.clientY - drag[1]);
  drag = [e.clientX, e.clientY];
});
const endDrag = () => { drag = null; canvas.classList.remove('dragging'); };
canvas.addEventListener('pointerup', endDrag);
canvas.addEventListener('pointercancel', endDrag);
canvas.addEventListener('wheel', e => {
  e.preventDefault();
  const rect = canvas.getBoundingClientRect();
  zoomAt(Math.exp(-e.deltaY * 0.002), e.clientX - rect.left, e.clientY - rect.top);
}, {passive: false});
$('zoom-in').addEventListener('click', () => zoomAt(2));
$('zoom-out').addEventListener('click', () => zoomAt(0.5));
$('reset').addEventListener('click', reset);
for (const id of ['seed', 'seed2', 'class', 'size']) $(id).addEventListener('change', () => requestRender());
$('psi').addEventListener('input', () => { $('psi-value').textContent = Number($('psi').value).toFixed(2); requestRender(); });
$('t').addEventListener('input', () => { $('t-value').textContent = Number($('t').value).toFixed(2); requestRender(); });
window.addEventListener('resize', () => requestRender());

if (meta.c_dim) {
  $('class-label').hidden = false;
  meta.class_names.forEach((name, k) => $('class').add(new Option(name || String(k), String(k))));
}
$('model').textContent = `${meta.family} · ${meta.resolution}² training grid · ${meta.img_channels} channel(s)` +
  ` · opset ${meta.opset} · onnxruntime-web ${meta.onnxruntime_web}`;

window.inrgan = {
  meta, render, seedLatent: seed => seedLatent(seed, meta.z_dim), slerp, view, viewBox, frames, zoomAt, panBy, reset,
  requestRender, get shown() { return shown; }, get busy() { return busy || wanted || shown === null || shown.preview; },
};
requestRender(false);
