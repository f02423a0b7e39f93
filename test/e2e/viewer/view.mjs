// view.mjs drives OHIF in headless Chromium (playwright-core) through the
// checks listed in a cases file (written by `fixture cases`) and judges each
// one from screenshot pixels:
//
//   seg: open the study, map the painted lesion's ground-truth mask from
//        image pixels to screen pixels through the viewport's own camera and
//        check the lesion is where the mapping says (calibration); load the
//        SEG (double-click, accept the prompt), go to the checked slice and
//        compare the overlay colour with the mask the case names (Dice,
//        centroid distance); then go to a slice without findings and check
//        there is no overlay.
//   sc:  open the heat-map series, go to the checked slice, check the
//        findings are coloured (and, for a single lesion, that the largest
//        coloured blob is centred on it).
//
// A case's mask is the painted lesion, or (case.target / case.empty) the
// node's own findings when the results come from the node. The multi-frame
// case names its own study, source series and lesion (case.study_uid,
// case.source_series_uid, case.lesion / case.empty), and every slice it
// checks must be the expected frame of the Enhanced MR instance.
//
// usage: node view.mjs CASES.json BASE_URL ARTIFACT_DIR RESULTS.json
// Environment: PLAYWRIGHT_CORE (path of playwright-core's index.mjs),
// CHROMIUM (default /usr/bin/chromium), E2E_CASES (a regular expression:
// run only the checks whose names match), and thresholds E2E_MIN_DICE (0.6),
// E2E_MAX_CENTROID_MM (3), E2E_SC_MAX_CENTROID_MM (6), E2E_MAX_EMPTY_FRACTION
// (0.05 of the lesion's screen area).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [casesPath, base, artifacts, resultsPath] = process.argv.slice(2);
if (!resultsPath) {
  console.error('usage: node view.mjs CASES.json BASE_URL ARTIFACT_DIR RESULTS.json');
  process.exit(2);
}
const { chromium } = await import(process.env.PLAYWRIGHT_CORE || 'playwright-core');
const env = (k, d) => (process.env[k] ? Number(process.env[k]) : d);
const limits = {
  minDice: env('E2E_MIN_DICE', 0.6),
  maxCentroidMM: env('E2E_MAX_CENTROID_MM', 3),
  scMaxCentroidMM: env('E2E_SC_MAX_CENTROID_MM', 6),
  maxEmptyFraction: env('E2E_MAX_EMPTY_FRACTION', 0.05),
  // The node's overlay against the painted lesion (issue 19); on unless
  // E2E_NODE_JUDGE_LESION=0 (e.g. with a config of your own).
  nodeJudgeLesion: process.env.E2E_NODE_JUDGE_LESION !== '0',
  nodeMinDice: env('E2E_NODE_MIN_DICE', 0.5),
  nodeMaxCentroidMM: env('E2E_NODE_MAX_CENTROID_MM', 5),
};
const { truth, cases: allCases } = JSON.parse(fs.readFileSync(casesPath, 'utf8'));
// E2E_CASES (a regular expression on the check names) runs some of them only.
const only = process.env.E2E_CASES ? new RegExp(process.env.E2E_CASES) : null;
const cases = allCases.filter((c) => !only || only.test(c.name));
fs.mkdirSync(artifacts, { recursive: true });

// An automation problem (a timeout, a missing button) is an error, not a
// failed pixel check: a deliberately broken SEG only counts as caught when
// its pixels were judged and found wrong.
class AutomationError extends Error {}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-viewer-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1400, height: 900 },
  deviceScaleFactor: 1,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-gl=swiftshader', '--enable-unsafe-swiftshader',
  ],
});

// No step may hang the run: every action and wait gives up after 30 s.
context.setDefaultTimeout(30000);
context.setDefaultNavigationTimeout(60000);

const log = (...a) => console.log(`[${new Date().toISOString().slice(11, 19)}]`, ...a);
const slug = (s) => s.replace(/[^A-Za-z0-9._-]+/g, '_');

async function openStudy(page, studyUID) {
  await page.goto(`${base}/viewer?StudyInstanceUIDs=${studyUID}`, { waitUntil: 'domcontentloaded' });
  // The first-visit tour and similar notices cover the viewport; dismiss
  // them whenever they show up.
  await page.addLocatorHandler(page.getByText('Skip all', { exact: true }), async (l) => { await l.click(); });
  await waitFor(page, 'the first image', () => {
    const cs = window.cornerstone;
    if (!cs) return false;
    return cs.getEnabledElements().some((ee) => ee.viewport.getCurrentImageId && ee.viewport.getCurrentImageId());
  }, 90000);
  const skip = page.getByText('Skip all', { exact: true });
  if (await skip.count()) await skip.first().click().catch(() => {});
}

async function waitFor(page, what, fn, timeout = 30000, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 250 });
  } catch (e) {
    throw new AutomationError(`timed out waiting for ${what}`);
  }
}

// showSlice puts the image at position ipp of the series into the viewport
// that shows the series (cornerstone's own stack navigation, like a scroll).
// The frames of a multi-frame instance are images of the stack too, each
// with its own position (from its Per-frame Functional Groups); when frame
// is given, the image found must be that frame of the instance
// (its wadors imageId ends in /frames/<frame>), or the check would judge
// another frame than it means to.
async function showSlice(page, seriesUID, ipp, frame) {
  const r = await page.evaluate(async ({ seriesUID, ipp, frame }) => {
    const cs = window.cornerstone;
    for (const ee of cs.getEnabledElements()) {
      const vp = ee.viewport;
      if (!vp.getImageIds) continue;
      const ids = vp.getImageIds();
      if (!ids.some((id) => id.includes(seriesUID))) continue;
      const idx = ids.findIndex((id) => {
        const p = cs.metaData.get('imagePlaneModule', id);
        const q = p && p.imagePositionPatient;
        return q && Math.hypot(q[0] - ipp[0], q[1] - ipp[1], q[2] - ipp[2]) < 0.05;
      });
      if (idx < 0) return { error: `no image of the series at ${ipp}` };
      if (frame && !ids[idx].endsWith(`/frames/${frame}`)) return { error: `the image at ${ipp} is ${ids[idx]}, not frame ${frame}` };
      // Is the stack in position order (what a scroll walks through)?
      const along = ids.map((id) => {
        const p = cs.metaData.get('imagePlaneModule', id);
        if (!p || !p.imagePositionPatient || !p.rowCosines || !p.columnCosines) return NaN;
        const [r, c, q] = [p.rowCosines, p.columnCosines, p.imagePositionPatient];
        const n = [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]];
        return q[0] * n[0] + q[1] * n[1] + q[2] * n[2];
      });
      const monotone = along.every((v, i) => i === 0 || v > along[i - 1]) || along.every((v, i) => i === 0 || v < along[i - 1]);
      await vp.setImageIdIndex(idx);
      return { viewportId: vp.id, idx, n: ids.length, imageId: ids[idx], positionOrder: monotone };
    }
    return { error: `no viewport shows series ${seriesUID}` };
  }, { seriesUID, ipp, frame });
  if (r.error) throw new AutomationError(r.error);
  await waitFor(page, 'the slice', ({ viewportId, idx }) => {
    const ee = window.cornerstone.getEnabledElements().find((e) => e.viewport.id === viewportId);
    return ee && ee.viewport.getCurrentImageIdIndex() === idx;
  }, 20000, r);
  // Let the image, the labelmap and the DOM overlays paint.
  await page.waitForTimeout(1500);
  return r;
}

// measure takes a screenshot and judges it in the page: every screen pixel
// inside the image is mapped back to image (column, row) through the
// viewport's camera (worldToCanvas of the image's own plane), so the
// ground-truth mask can be compared pixel by pixel with what is on screen.
async function measure(page, shot, { viewportId, mask, colour, centroid }) {
  const png = await page.screenshot({ path: shot });
  return page.evaluate(async ({ b64, viewportId, maskB64, colour, centroid }) => {
    const cs = window.cornerstone;
    const ee = cs.getEnabledElements().find((e) => e.viewport.id === viewportId);
    const vp = ee.viewport;
    const imageId = vp.getCurrentImageId();
    const plane = cs.metaData.get('imagePlaneModule', imageId);
    const { imagePositionPatient: o, rowCosines: rc, columnCosines: cc, rowPixelSpacing: rs, columnPixelSpacing: csp, rows, columns } = plane;
    const rect = vp.canvas.getBoundingClientRect();
    const toPage = (c, r) => {
      const w = [0, 1, 2].map((i) => o[i] + c * csp * rc[i] + r * rs * cc[i]);
      const p = vp.worldToCanvas(w);
      return [rect.left + p[0], rect.top + p[1]];
    };
    const p0 = toPage(0, 0), pc = toPage(1, 0), pr = toPage(0, 1);
    const a = pc[0] - p0[0], b = pr[0] - p0[0], c = pc[1] - p0[1], d = pr[1] - p0[1];
    const det = a * d - b * c;
    const toImage = (x, y) => {
      const dx = x - p0[0], dy = y - p0[1];
      return [(d * dx - b * dy) / det, (-c * dx + a * dy) / det];
    };
    const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const bmp = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
    const oc = new OffscreenCanvas(bmp.width, bmp.height);
    const ctx = oc.getContext('2d');
    ctx.drawImage(bmp, 0, 0);
    const img = ctx.getImageData(0, 0, bmp.width, bmp.height).data;
    const m = maskB64 ? Uint8Array.from(atob(maskB64), (ch) => ch.charCodeAt(0)) : null;
    // Overlay pixels: their colour departs from grey in the direction of the
    // segment's colour (a blend of grey and that colour), or, without a
    // known colour, any clearly coloured pixel.
    let sv = null;
    if (colour) {
      const mean = (colour[0] + colour[1] + colour[2]) / 3;
      sv = [colour[0] - mean, colour[1] - mean, colour[2] - mean];
      const n = Math.hypot(...sv) || 1;
      sv = sv.map((x) => x / n);
    }
    const x0 = Math.max(0, Math.floor(rect.left)), x1 = Math.min(bmp.width, Math.ceil(rect.right));
    const y0 = Math.max(0, Math.floor(rect.top)), y1 = Math.min(bmp.height, Math.ceil(rect.bottom));
    // flag marks overlay pixels for the connected-component pass below.
    const W = x1 - x0, H = y1 - y0;
    const flag = new Uint8Array(Math.max(0, W * H));
    const imgAt = new Float64Array(Math.max(0, W * H) * 2);
    let inImage = 0, lum = 0, ov = 0, gt = 0, tp = 0, sc = 0, sr = 0, gtIn = 0, ring = 0, gtLum = 0, ringLum = 0;
    const rad = centroid ? centroid.radius : 0;
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const [ic, ir] = toImage(x + 0.5, y + 0.5);
        const col = Math.round(ic), row = Math.round(ir);
        if (col < 0 || row < 0 || col >= columns || row >= rows) continue;
        imgAt[2 * ((y - y0) * W + (x - x0))] = ic;
        imgAt[2 * ((y - y0) * W + (x - x0)) + 1] = ir;
        const k = (y * bmp.width + x) * 4;
        const R = img[k], G = img[k + 1], B = img[k + 2];
        inImage++;
        const l = (R + G + B) / 3;
        lum += l;
        const ch = [R - l, G - l, B - l];
        const chroma = Math.hypot(...ch);
        let isOv = false;
        if (sv) isOv = chroma >= 25 && (ch[0] * sv[0] + ch[1] * sv[1] + ch[2] * sv[2]) / chroma >= 0.9;
        else isOv = chroma >= 40;
        const isGt = m ? m[row * columns + col] === 1 : false;
        if (isOv) { ov++; sc += ic; sr += ir; flag[(y - y0) * W + (x - x0)] = 1; }
        if (isGt) { gt++; gtLum += l; }
        if (isOv && isGt) tp++;
        if (centroid && !isGt) {
          const dd = Math.hypot(ic - centroid.col, ir - centroid.row);
          if (dd > rad + 3 && dd < rad + 8) { ring++; ringLum += l; }
        }
      }
    }
    const res = {
      image: imageId.replace(/^.*\/instances\//, ''),
      imageRect: [p0, toPage(columns, rows)].map((p) => p.map((v) => Math.round(v))),
      screenPxPerImagePx: Math.hypot(a, c),
      inImage, meanLum: inImage ? lum / inImage : 0,
      overlayPx: ov, truthPx: gt, truePositivePx: tp,
      dice: ov + gt ? (2 * tp) / (ov + gt) : 0,
      truthMeanLum: gt ? gtLum / gt : null, ringMeanLum: ring ? ringLum / ring : null,
    };
    // The largest 4-connected blob of overlay pixels: burned-in text and
    // other small coloured marks do not move its centroid.
    let best = { n: 0, c: 0, r: 0 };
    const queue = new Int32Array(Math.max(1, W * H));
    for (let start = 0; start < W * H; start++) {
      if (flag[start] !== 1) continue;
      let head = 0, tail = 0, n = 0, cc0 = 0, rr0 = 0;
      queue[tail++] = start;
      flag[start] = 2;
      while (head < tail) {
        const q = queue[head++];
        n++; cc0 += imgAt[2 * q]; rr0 += imgAt[2 * q + 1];
        const qx = q % W, qy = (q - qx) / W;
        if (qx > 0 && flag[q - 1] === 1) { flag[q - 1] = 2; queue[tail++] = q - 1; }
        if (qx < W - 1 && flag[q + 1] === 1) { flag[q + 1] = 2; queue[tail++] = q + 1; }
        if (qy > 0 && flag[q - W] === 1) { flag[q - W] = 2; queue[tail++] = q - W; }
        if (qy < H - 1 && flag[q + W] === 1) { flag[q + W] = 2; queue[tail++] = q + W; }
      }
      if (n > best.n) best = { n, c: cc0 / n, r: rr0 / n };
    }
    if (best.n) {
      res.largestBlobPx = best.n;
      res.largestBlobCentroid = [best.c, best.r];
      if (centroid) res.largestBlobDistanceMM = Math.hypot((best.c - centroid.col) * csp, (best.r - centroid.row) * rs);
    }
    if (ov) {
      res.overlayCentroid = [sc / ov, sr / ov];
      if (centroid) {
        const dc = (sc / ov - centroid.col) * csp, dr = (sr / ov - centroid.row) * rs;
        res.centroidDistanceMM = Math.hypot(dc, dr);
      }
    }
    return res;
  }, { b64: png.toString('base64'), viewportId, maskB64: mask, colour, centroid });
}

async function segColour(page) {
  return page.evaluate(() => {
    const st = window.cornerstoneTools.segmentation;
    const segs = st.state.getSegmentations();
    const vp = window.cornerstone.getEnabledElements()[0].viewport;
    try {
      return st.config.color.getSegmentIndexColor(vp.id, segs[segs.length - 1].segmentationId, 1).slice(0, 3);
    } catch (e) {
      return null;
    }
  });
}

// The painted lesion (always used for the calibration) and, per case, the
// mask the viewer must show: the lesion for the fixture's results, the
// node's own findings (decoded from its SEG by `fixture cases`) for the node's.
const lesion = truth.target;
const centroidOf = (t) => ({ col: t.centroid_col, row: t.centroid_row, radius: Math.sqrt(t.lesion_pixels / Math.PI) });

// mark records how long each step took (slow steps show in the log).
function mark(res, label) {
  const now = Date.now();
  res.steps.push(`${label} ${((now - (res.lastMark || res.start)) / 1000).toFixed(1)}s`);
  res.lastMark = now;
}

async function runSEG(page, c, res) {
  // The multi-frame case names its own study, source series and lesion.
  const painted = c.lesion || lesion;
  const source = c.source_series_uid || truth.source_series_uid;
  await openStudy(page, c.study_uid || truth.study_uid);
  mark(res, 'open');
  // Calibration, before any overlay: the painted lesion must be brighter than
  // a ring around it where the mapping puts it, or the mapping (and so every
  // later verdict) means nothing.
  const before = await showSlice(page, source, painted.image_position_patient, painted.frame);
  res.metrics.stack = { images: before.n, lesionIndex: before.idx, lesionImage: before.imageId, positionOrder: before.positionOrder };
  const calShot = path.join(artifacts, `${slug(c.name)}-0-before.png`);
  const cal = await measure(page, calShot, { viewportId: before.viewportId, mask: painted.mask_b64, centroid: centroidOf(painted) });
  res.screenshots.push(calShot);
  res.metrics.calibration = cal;
  if (!(cal.truthMeanLum > cal.ringMeanLum + 10)) {
    throw new AutomationError(`calibration: the painted lesion is not where the mapping puts it (inside ${cal.truthMeanLum}, ring ${cal.ringMeanLum})`);
  }
  mark(res, 'calibrate');

  const entry = page.getByText(c.description, { exact: true });
  try {
    await entry.first().waitFor({ timeout: 20000 });
  } catch {
    throw new AutomationError(`no study-panel entry "${c.description}"`);
  }
  await entry.first().dblclick();
  const yes = page.getByRole('button', { name: 'Yes', exact: true });
  try {
    await yes.first().waitFor({ timeout: 30000 });
    await yes.first().click();
  } catch {
    throw new AutomationError('no hydration prompt after the double-click');
  }
  await waitFor(page, 'the segmentation to load', () => {
    const st = window.cornerstoneTools && window.cornerstoneTools.segmentation;
    return st && st.state.getSegmentations().length > 0;
  }, 30000);
  mark(res, 'load SEG');
  await page.waitForTimeout(1000);
  const colour = await segColour(page);
  res.metrics.segmentColour = colour;

  const target = c.target || painted;
  const empty = c.target || c.lesion ? c.empty : truth.empty;
  const at = await showSlice(page, source, target.image_position_patient, target.frame);
  const shot = path.join(artifacts, `${slug(c.name)}-1-lesion.png`);
  const m = await measure(page, shot, { viewportId: at.viewportId, mask: target.mask_b64, colour, centroid: centroidOf(target) });
  res.screenshots.push(shot);
  res.metrics.lesionSlice = m;
  if (m.meanLum < 5) res.failures.push(`the lesion slice looks blank (mean luminance ${m.meanLum.toFixed(1)})`);
  if (m.overlayPx < 0.3 * m.truthPx) res.failures.push(`overlay missing on the lesion slice: ${m.overlayPx} overlay px for ${m.truthPx} lesion px`);
  if (m.dice < limits.minDice) res.failures.push(`overlay does not cover the lesion: Dice ${m.dice.toFixed(3)} < ${limits.minDice}`);
  if (m.overlayPx && m.centroidDistanceMM > limits.maxCentroidMM) res.failures.push(`overlay centroid ${m.centroidDistanceMM.toFixed(2)} mm from the lesion's (max ${limits.maxCentroidMM})`);

  mark(res, 'lesion slice');
  if (c.judge_lesion && !limits.nodeJudgeLesion) {
    res.notes.push("not judged against the painted lesion (E2E_NODE_JUDGE_LESION=0): the node's findings are judged against its own SEG only");
  }
  if (c.judge_lesion && limits.nodeJudgeLesion) {
    // The node's overlay must also be the painted lesion: on the lesion's
    // largest slice, overlay against the painted mask.
    const pl = await showSlice(page, source, painted.image_position_patient, painted.frame);
    const pshot = path.join(artifacts, `${slug(c.name)}-3-painted.png`);
    const p = await measure(page, pshot, { viewportId: pl.viewportId, mask: painted.mask_b64, colour, centroid: centroidOf(painted) });
    res.screenshots.push(pshot);
    res.metrics.paintedLesion = p;
    if (p.dice < limits.nodeMinDice) res.failures.push(`the node's overlay does not cover the painted lesion: Dice ${p.dice.toFixed(3)} < ${limits.nodeMinDice}`);
    if (!p.overlayPx || p.centroidDistanceMM > limits.nodeMaxCentroidMM) {
      res.failures.push(`the node's overlay centroid is ${p.overlayPx ? p.centroidDistanceMM.toFixed(2) + ' mm' : 'nowhere'} from the painted lesion's (max ${limits.nodeMaxCentroidMM} mm)`);
    }
    mark(res, 'painted lesion');
  }
  if (!empty) {
    res.notes.push('every slice has findings: no lesion-free slice to check');
    return;
  }
  const em = await showSlice(page, source, empty.image_position_patient, empty.frame);
  const eshot = path.join(artifacts, `${slug(c.name)}-2-empty.png`);
  const e = await measure(page, eshot, { viewportId: em.viewportId, mask: empty.mask_b64, colour });
  res.screenshots.push(eshot);
  res.metrics.emptySlice = e;
  const allowed = Math.max(10, limits.maxEmptyFraction * m.truthPx);
  if (e.meanLum < 2) res.failures.push(`the lesion-free slice looks blank (mean luminance ${e.meanLum.toFixed(1)})`);
  if (e.overlayPx > allowed) res.failures.push(`overlay on a lesion-free slice: ${e.overlayPx} px (max ${Math.round(allowed)})`);
}

async function runSC(page, c, res) {
  await openStudy(page, c.study_uid || truth.study_uid);
  mark(res, 'open');
  const entry = page.getByText(c.description, { exact: true });
  try {
    await entry.first().waitFor({ timeout: 20000 });
  } catch {
    throw new AutomationError(`no study-panel entry "${c.description}"`);
  }
  await entry.first().dblclick();
  await waitFor(page, 'the heat-map series in the viewport', (uid) => window.cornerstone.getEnabledElements()
    .some((ee) => ee.viewport.getCurrentImageId && (ee.viewport.getCurrentImageId() || '').includes(uid)), 30000, c.series_uid);
  mark(res, 'load SC');
  const target = c.target || lesion;
  const at = await showSlice(page, c.series_uid, target.image_position_patient);
  const shot = path.join(artifacts, `${slug(c.name)}-1-lesion.png`);
  const m = await measure(page, shot, { viewportId: at.viewportId, mask: target.mask_b64, centroid: centroidOf(target) });
  res.screenshots.push(shot);
  res.metrics.lesionSlice = m;
  // The legend burned into every heat map is coloured too, so "any colour"
  // proves nothing: the findings themselves must be coloured (fill or
  // outline) ...
  const minCover = c.hot_spot ? 0.5 : 0.3;
  if (m.truePositivePx < minCover * m.truthPx) res.failures.push(`the findings are not coloured: ${m.truePositivePx} of ${m.truthPx} px (min ${minCover * 100} %)`);
  // ... and a single lesion is the largest coloured blob, centred on it.
  if (c.hot_spot && !(m.largestBlobDistanceMM <= limits.scMaxCentroidMM)) res.failures.push(`heat-map hot spot ${m.largestBlobDistanceMM === undefined ? 'missing' : m.largestBlobDistanceMM.toFixed(2) + ' mm from the lesion'} (max ${limits.scMaxCentroidMM})`);
}

const results = [];
for (const c of cases) {
  const res = { name: c.name, test: c.test, expectFail: c.expect_fail, screenshots: [], metrics: {}, failures: [], notes: [], error: null, steps: [], start: Date.now() };
  const page = await context.newPage();
  page.on('pageerror', (e) => log(`  page error: ${e.message.slice(0, 200)}`));
  const t0 = Date.now();
  try {
    if (c.kind === 'seg') await runSEG(page, c, res);
    else await runSC(page, c, res);
  } catch (e) {
    res.error = e instanceof AutomationError ? e.message : `${e.name}: ${e.message}`;
    const shot = path.join(artifacts, `${slug(c.name)}-error.png`);
    await page.screenshot({ path: shot }).catch(() => {});
    res.screenshots.push(shot);
  }
  res.seconds = (Date.now() - t0) / 1000;
  await page.close();
  const ls = res.metrics.lesionSlice;
  const mm = (v) => (v === undefined ? '-' : `${v.toFixed(2)} mm`);
  const summary = !ls ? '' : c.kind === 'sc'
    ? `coloured ${ls.overlayPx}px, findings ${ls.truthPx}px of which coloured ${ls.truePositivePx}px, largest blob ${mm(ls.largestBlobDistanceMM)} from their centroid`
    : `overlay ${ls.overlayPx}px, ${c.target ? 'node findings' : 'lesion'} ${ls.truthPx}px, Dice ${ls.dice.toFixed(3)}, centroid ${mm(ls.centroidDistanceMM)} from ${c.target ? "the findings'" : "the lesion's"}; lesion-free slice ${res.metrics.emptySlice ? res.metrics.emptySlice.overlayPx : '-'}px${res.metrics.paintedLesion ? `; painted lesion: Dice ${res.metrics.paintedLesion.dice.toFixed(3)}, centroid ${mm(res.metrics.paintedLesion.centroidDistanceMM)}` : ''}`;
  const verdict = res.error ? `ERROR ${res.error}` : res.failures.length ? `MISMATCH ${res.failures.join('; ')}` : 'OK';
  log(`${c.name}: ${verdict} ${summary ? '(' + summary + ')' : ''} [${res.seconds.toFixed(1)}s]`);
  log(`  steps: ${res.steps.join(', ')}`);
  for (const n of res.notes) log(`  note: ${n}`);
  for (const s of res.screenshots) log(`  screenshot ${s}`);
  results.push(res);
}
await context.close();
fs.rmSync(userDataDir, { recursive: true, force: true });

// A test passes when all its checks are OK; a negative test passes when at
// least one of its checks judged the pixels and found them wrong, and none
// of them hit an automation error.
const tests = {};
for (const r of results) (tests[r.test] ||= { name: r.test, expectFail: r.expectFail, checks: [] }).checks.push(r);
let passed = 0, failed = 0;
for (const t of Object.values(tests)) {
  const errors = t.checks.filter((r) => r.error);
  const mismatches = t.checks.filter((r) => !r.error && r.failures.length);
  if (t.expectFail) t.pass = errors.length === 0 && mismatches.length > 0;
  else t.pass = errors.length === 0 && mismatches.length === 0;
  const how = t.expectFail
    ? (t.pass ? `caught by ${mismatches.map((r) => r.name).join(', ')}` : errors.length ? 'automation error' : 'NOT caught: every check passed')
    : (t.pass ? 'all checks OK' : `${errors.length} errors, ${mismatches.length} mismatches`);
  console.log(`TEST ${t.pass ? 'PASS' : 'FAIL'} ${t.name}${t.expectFail ? ' (must be caught)' : ''}: ${how}`);
  t.pass ? passed++ : failed++;
}
fs.writeFileSync(resultsPath, JSON.stringify({ limits, tests: Object.values(tests).map(({ name, expectFail, pass }) => ({ name, expectFail, pass })), checks: results }, null, 2));
console.log(`view: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
