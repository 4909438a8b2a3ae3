/* pinn_jax browser demo: the cart-pole swing-up and its policies, live, in float32.
 *
 * A small port of pinn_jax/envs/cartpole_swingup.py (the env step), of
 * pinn_jax/policies/attention_neuron.py (AttentionNeuronPolicy.step) and of pinn_jax/policies/mlp.py,
 * every arithmetic operation rounded to float32 (Math.fround / Float32Array) as JAX computes it.
 * The models' parameters and the env's physics come from models.js (window.PINN_DEMO), written by
 * `python -m pinn_jax demo`, which folds an attention neuron's gains into its parameters (the page
 * knows none).  index.html?test=FILE.js runs the parity checks of tests/test_demo.py on the inputs
 * FILE.js defines (window.PINN_TEST_INPUT) and writes the results into #pinn-test.
 */
(function () {
  "use strict";
  const f = Math.fround;
  const DATA = window.PINN_DEMO;

  // ------------------------------------------------------------------ environment
  const PHYSICS = ["gravity", "masscart", "masspole", "length", "force_mag", "friction", "dt", "x_threshold"];

  function envParams(raw) {  // inside jit the params are float32 arrays: every constant is a float32
    const p = {};
    for (const k of PHYSICS) p[k] = f(raw[k]);
    return p;
  }

  function accelerations(p, xd, th, thd, force) {  // the cart's and the pole's (ẍ, θ̈)
    const s = f(Math.sin(th)), c = f(Math.cos(th));
    const mp = p.masspole, l = p.length, g = p.gravity, b = p.friction;
    const totalM = f(p.masscart + mp), mpl = f(mp * l), thd2 = f(thd * thd), c2 = f(c * c);
    // ẍ = (-2 m_p l θ̇² s + 3 m_p g s c + 4 F - 4 b ẋ) / (4 M - 3 m_p c²)
    let num = f(f(f(-2 * mpl) * thd2) * s);
    num = f(num + f(f(f(f(3 * mp) * g) * s) * c));
    num = f(f(num + f(4 * force)) - f(f(4 * b) * xd));
    const xAcc = f(num / f(f(4 * totalM) - f(f(3 * mp) * c2)));
    // θ̈ = (-3 m_p l θ̇² s c + 6 M g s + 6 (F - b ẋ) c) / (4 l M - 3 m_p l c²)
    let tnum = f(f(f(f(-3 * mpl) * thd2) * s) * c);
    tnum = f(tnum + f(f(f(6 * totalM) * g) * s));
    tnum = f(tnum + f(f(6 * f(force - f(b * xd))) * c));
    const thAcc = f(tnum / f(f(f(4 * l) * totalM) - f(f(3 * mpl) * c2)));
    return [xAcc, thAcc];
  }

  function envStep(p, st, action) {  // one Euler step (positions use the old velocities)
    const a = Math.min(Math.max(f(action), -1), 1);
    const [xAcc, thAcc] = accelerations(p, st.x_dot, st.theta, st.theta_dot, f(p.force_mag * a));
    const s = {
      x: f(st.x + f(st.x_dot * p.dt)),
      theta: f(st.theta + f(st.theta_dot * p.dt)),
      x_dot: f(st.x_dot + f(xAcc * p.dt)),
      theta_dot: f(st.theta_dot + f(thAcc * p.dt)),
      time: st.time + 1,
    };
    // reward on the post-step state: (cos θ + 1)/2 · cos(x / x_threshold · π/2)
    const rTheta = f(f(f(Math.cos(s.theta)) + 1) / 2);
    const rX = f(Math.cos(f(f(s.x / p.x_threshold) * f(Math.PI / 2))));
    return { state: s, reward: f(rTheta * rX), terminated: Math.abs(s.x) > p.x_threshold };
  }

  function envReset(p, hard, rng) {  // the start distributions of reset_env, with this page's RNG
    let v;
    if (hard) {
      const lo = [-p.x_threshold, -10, Math.PI / 2, -10].map(f), hi = [p.x_threshold, 10, 1.5 * Math.PI, 10].map(f);
      v = lo.map((l, i) => f(l + f(f(hi[i] - l) * f(rng()))));
    } else {
      v = [0, 0, f(Math.PI), 0].map((m) => f(m + f(0.2 * f(gaussian(rng)))));
    }
    return { x: v[0], x_dot: v[1], theta: v[2], theta_dot: v[3], time: 0 };
  }

  function envObs(st) {  // [x, ẋ, cos θ, sin θ, θ̇]
    return Float32Array.of(st.x, st.x_dot, Math.cos(st.theta), Math.sin(st.theta), st.theta_dot);
  }

  // ------------------------------------------------------------------ randomness
  function mulberry32(seed) {
    let a = seed >>> 0;
    return function () {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = Math.imul(a ^ (a >>> 15), a | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function gaussian(rng) {  // Box-Muller
    let u = 0;
    while (u === 0) u = rng();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
  }

  function randomPerm(n, rng) {  // Fisher-Yates
    const p = Int32Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [p[i], p[j]] = [p[j], p[i]];
    }
    return p;
  }

  // ------------------------------------------------------------------ policies
  const F32 = (nested) => Float32Array.from(nested.flat(Infinity));
  const sigmoid = (x) => f(1 / (1 + Math.exp(-x)));

  function dot(a, ai, as, b, bi, bs, n) {  // float32 sum of a[ai + k·as] · b[bi + k·bs], k < n
    let s = 0;
    for (let k = 0; k < n; k++) s = f(s + f(a[ai + k * as] * b[bi + k * bs]));
    return s;
  }

  function posTable(nPos, dim) {  // fixed sinusoidal queries, computed in float64 then cast
    const t = new Float32Array(nPos * dim);
    for (let i = 0; i < nPos; i++) {
      for (let j = 0; j < dim; j++) {
        const angle = i / Math.pow(10000, (2 * Math.floor(j / 2)) / dim);
        t[i * dim + j] = j % 2 === 0 ? Math.sin(angle) : Math.cos(angle);
      }
    }
    return t;
  }

  function attentionNeuron(model) {
    const cfg = model.policy, prm = model.params;
    const H = cfg.pos_em_dim, M = cfg.hidden_dim, D = cfg.msg_dim, G = 4 * H, I = 1 + cfg.act_dim;
    const wIh = F32(prm.lstm.weight_ih), wHh = F32(prm.lstm.weight_hh);  // (4H, 1 + act_dim), (4H, H)
    const bias = Float32Array.from(prm.lstm.bias_ih, (b, r) => b + prm.lstm.bias_hh[r]);
    const q = posTable(M, H), wq = F32(prm.w_q), wk = F32(prm.w_k);  // (M, H), (H, D), (H, D)
    const qw = new Float32Array(M * D), P = new Float32Array(M * H);  // P = (Q W_q) W_k^T / logit_scale
    for (let m = 0; m < M; m++) for (let d = 0; d < D; d++) qw[m * D + d] = dot(q, m * H, 1, wq, d, D, H);
    for (let m = 0; m < M; m++) for (let k = 0; k < H; k++) P[m * H + k] = f(dot(qw, m * D, 1, wk, k * D, 1, D) / f(cfg.logit_scale));
    const kernel = F32(prm.head.kernel), hb = F32(prm.head.bias);  // (M, 1), (1,)
    return {
      kind: model.kind, inputs: null, queries: M,
      init: (n) => ({ h: new Float32Array(n * H), c: new Float32Array(n * H) }),
      resize(st, n) {  // keep the state of the first positions, zero the new ones
        const s = this.init(n), k = Math.min(n * H, st.h.length);
        s.h.set(st.h.subarray(0, k)); s.c.set(st.c.subarray(0, k));
        return s;
      },
      step(st, obs, prev) {
        const n = obs.length, h = new Float32Array(n * H), c = new Float32Array(n * H), g = new Float32Array(G);
        const shared = Float32Array.from(bias, (b, r) => f(f(prev[0] * wIh[r * I + 1]) + b));
        for (let i = 0; i < n; i++) {  // ONE LSTM cell shared by the features, gate rows i, f, g, o
          for (let r = 0; r < G; r++) g[r] = f(f(f(obs[i] * wIh[r * I]) + shared[r]) + dot(st.h, i * H, 1, wHh, r * H, 1, H));
          for (let k = 0; k < H; k++) {
            const ig = sigmoid(g[k]), fg = sigmoid(g[H + k]), gg = f(Math.tanh(g[2 * H + k])), og = sigmoid(g[3 * H + k]);
            c[i * H + k] = f(f(fg * st.c[i * H + k]) + f(ig * gg));
            h[i * H + k] = f(og * f(Math.tanh(c[i * H + k])));
          }
        }
        const attn = new Float32Array(M * n), latent = new Float32Array(M);  // A = tanh(P K^T), m = tanh(A o)
        for (let m = 0; m < M; m++) {
          for (let i = 0; i < n; i++) attn[m * n + i] = Math.tanh(dot(P, m * H, 1, h, i * H, 1, H));
          latent[m] = Math.tanh(dot(attn, m * n, 1, obs, 0, 1, n));
        }
        const action = Float32Array.of(Math.tanh(f(dot(latent, 0, 1, kernel, 0, 1, M) + hb[0])));
        return { state: { h, c }, action, attention: attn };
      },
    };
  }

  function mlp(model) {  // tanh hidden layers, then the head, then tanh; kernels are (in, out)
    const p = model.params.params, names = Object.keys(p).filter((k) => k.startsWith("hidden_"));
    names.sort((a, b) => parseInt(a.slice(7)) - parseInt(b.slice(7)));
    const layers = [...names, "out"].map((k) => ({ w: F32(p[k].kernel), b: F32(p[k].bias), nIn: p[k].kernel.length }));
    return {
      kind: model.kind, inputs: layers[0].nIn, queries: 0,
      init: () => null,
      resize: () => null,
      step(st, obs) {
        if (obs.length !== layers[0].nIn) throw new Error(`${model.kind} takes ${layers[0].nIn} inputs, got ${obs.length}`);
        let x = obs;
        for (const L of layers) {
          const nOut = L.b.length;
          x = Float32Array.from(L.b, (b, j) => Math.tanh(f(dot(x, 0, 1, L.w, j, nOut, L.nIn) + b)));
        }
        return { state: null, action: x, attention: null };
      },
    };
  }

  const makePolicy = (model) => (model.kind === "attention_neuron" ? attentionNeuron : mlp)(model);

  // ------------------------------------------------------------------ test mode
  function runTests(input) {
    const p = envParams(DATA.env), out = { env: [], policy: [], resets: {} };
    for (const c of input.env) {  // fixed starts, fixed actions
      let st = { x: f(c.state[0]), x_dot: f(c.state[1]), theta: f(c.state[2]), theta_dot: f(c.state[3]), time: 0 };
      const r = { states: [], rewards: [], terminated: [] };
      for (const a of c.actions) {
        const res = envStep(p, st, a);
        st = res.state;
        r.states.push([st.x, st.x_dot, st.theta, st.theta_dot]);
        r.rewards.push(res.reward);
        r.terminated.push(res.terminated);
      }
      out.env.push(r);
    }
    for (const c of input.policy) {  // recorded observations; the policy feeds back its own actions and
      const pol = makePolicy(DATA.models[c.model]);  // state, or, with c.forced, starts each step from the given
      let st = pol.init(c.obs[0].length), prev = Float32Array.of(0);  // [h, c, previous action]
      const r = { actions: [], attention: [], h: [], c: [] };
      c.obs.forEach((o, t) => {
        if (c.forced) { st = { h: Float32Array.from(c.forced[t][0]), c: Float32Array.from(c.forced[t][1]) }; prev = Float32Array.from(c.forced[t][2]); }
        const res = pol.step(st, Float32Array.from(o), prev);
        st = res.state; prev = res.action;
        r.actions.push(res.action[0]);
        if (res.attention) { r.attention.push(Array.from(res.attention)); r.h.push(Array.from(st.h)); r.c.push(Array.from(st.c)); }
      });
      out.policy.push(r);
    }
    const rng = mulberry32(input.seed || 0);
    for (const mode of ["hard", "easy"]) {
      out.resets[mode] = Array.from({ length: input.resets || 0 }, () => {
        const s = envReset(p, mode === "hard", rng);
        return [s.x, s.x_dot, s.theta, s.theta_dot];
      });
    }
    return out;
  }

  function bench(ms) {  // steps per second of env + policy, per model
    const p = envParams(DATA.env), rng = mulberry32(1);
    return DATA.models.map((model) => {
      const pol = makePolicy(model);
      let st = envReset(p, true, rng), ps = pol.init(5), prev = Float32Array.of(0), n = 0;
      const t0 = performance.now();
      while (performance.now() - t0 < ms) {
        for (let k = 0; k < 100; k++, n++) {
          const r = pol.step(ps, envObs(st), prev);
          ps = r.state; prev = r.action;
          st = envStep(p, st, r.action[0]).state;
          if (Math.abs(st.x) > 100) st = envReset(p, true, rng);
        }
      }
      return { model: model.name, steps_per_s: Math.round(n / ((performance.now() - t0) / 1000)) };
    });
  }

  // ------------------------------------------------------------------ the page
  const FEATURES = ["x", "ẋ", "cos θ", "sin θ", "θ̇"];
  const $ = (id) => document.getElementById(id);

  function App() {
    const query = new URLSearchParams(location.search);
    const P = envParams(DATA.env), rng = mulberry32(parseInt(query.get("seed") || DATA.seed, 10) || 0);
    const app = { paused: false, speed: 1, noise: 0, every: 0, perm: Int32Array.of(0, 1, 2, 3, 4), fps: 0 };

    function nFeatures() { return 5 + app.noise; }
    function identity(n) { return Int32Array.from({ length: n }, (_, i) => i); }
    const isIdentity = (p) => p.every((v, i) => v === i);

    function reset() {
      app.state = envReset(P, $("start").value === "hard", rng);
      app.pstate = app.policy.init(nFeatures());
      app.prev = Float32Array.of(0); app.ret = 0; app.reward = 0; app.done = ""; app.doneFrames = 0;
      app.attention = null;
      if (app.every > 0) app.perm = randomPerm(nFeatures(), rng);
    }

    function setModel(i) {
      app.model = DATA.models[i];
      app.policy = makePolicy(app.model);
      const fixed = app.policy.inputs !== null;
      $("noise").disabled = fixed;
      $("noise-note").textContent = fixed ? `n/a: the ${app.model.kind} takes exactly ${app.policy.inputs} inputs` : "";
      if (fixed) setNoise(app.policy.inputs - 5);  // 5 features, and the noise features it was trained with
      const t = app.model.trained_with;
      $("model-info").textContent = `${app.model.kind}, ${app.model.num_params} parameters, trained on ` +
        `${app.model.env.name} (${app.model.env.start} start)` + (t.shuffle ? `, shuffled ${t.shuffle_every ? `every ${t.shuffle_every} steps` : "once per episode"}` : "") +
        (t.num_noise ? `, ${t.num_noise} noise features` : "");
      reset();
    }

    function setNoise(n) {
      app.noise = n;
      $("noise").value = n;
      app.perm = isIdentity(app.perm) ? identity(nFeatures()) : randomPerm(nFeatures(), rng);
      if (app.pstate !== undefined) app.pstate = app.policy.resize(app.pstate, nFeatures());
      app.attention = null;
    }

    function observe() {  // concat(obs, noise)[perm], as pinn_jax/envs/wrappers.py
      const full = new Float32Array(nFeatures());
      full.set(envObs(app.state));
      for (let i = 5; i < full.length; i++) full[i] = f(0.1 * gaussian(rng));
      return full.map((_, i) => full[app.perm[i]]);
    }

    function tick() {
      if (app.done) return;
      const r = app.policy.step(app.pstate, observe(), app.prev);
      app.pstate = r.state; app.prev = r.action; app.attention = r.attention;
      const e = envStep(P, app.state, r.action[0]);
      app.state = e.state; app.reward = e.reward; app.ret += e.reward;
      if (app.every > 0 && app.state.time % app.every === 0) app.perm = randomPerm(nFeatures(), rng);
      if (e.terminated) app.done = "the cart left the track";
      else if (app.state.time >= app.model.env.max_steps) app.done = "time limit";
    }

    function drawScene() {
      const cv = $("scene"), ctx = cv.getContext("2d"), W = cv.width, Hh = cv.height, st = app.state;
      const l = P.length, span = 2 * (P.x_threshold + l + 0.3), scale = W / span, ty = Hh * 0.55;
      const px = (wx) => (wx + span / 2) * scale;
      ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, W, Hh);
      ctx.fillStyle = "rgb(60,60,60)"; ctx.fillRect(0, ty, W, 3);
      for (const e of [-P.x_threshold, P.x_threshold]) ctx.fillRect(px(e) - 1, ty - 10, 2, 10);
      const cx = px(st.x), cw = 0.4 * scale, ch = 0.2 * scale;
      ctx.fillStyle = "rgb(40,90,200)"; ctx.fillRect(cx - cw / 2, ty - ch / 2, cw, ch);
      const tx = cx - Math.sin(st.theta) * l * scale, tyy = ty - Math.cos(st.theta) * l * scale;
      ctx.strokeStyle = "rgb(200,120,60)"; ctx.lineWidth = Math.max(4, 0.08 * scale); ctx.lineCap = "round";
      ctx.beginPath(); ctx.moveTo(cx, ty); ctx.lineTo(tx, tyy); ctx.stroke();
      ctx.fillStyle = "rgb(120,40,40)"; ctx.beginPath(); ctx.arc(tx, tyy, Math.max(3, 0.07 * scale), 0, 2 * Math.PI); ctx.fill();
      const a = app.prev[0], bx = W / 2, by = Hh - 22, bw = W * 0.3;  // the action bar
      ctx.fillStyle = "#eeeeee"; ctx.fillRect(bx - bw, by, 2 * bw, 12);
      ctx.fillStyle = a >= 0 ? "rgb(200,60,60)" : "rgb(60,90,200)"; ctx.fillRect(Math.min(bx, bx + a * bw), by, Math.abs(a) * bw, 12);
      ctx.fillStyle = "#333"; ctx.fillRect(bx - 1, by - 3, 2, 18);
      ctx.font = "14px monospace"; ctx.fillStyle = "#222";
      ctx.fillText(`step ${st.time}/${app.model.env.max_steps}   return ${app.ret.toFixed(1)}   reward ${app.reward.toFixed(3)}`, 10, 20);
      ctx.fillText(`action ${a >= 0 ? " " : ""}${a.toFixed(3)}`, 10, by + 11);
      if (app.done) {
        ctx.font = "bold 18px sans-serif"; ctx.fillStyle = "rgb(160,30,30)";
        ctx.fillText(`episode over (${app.done}): return ${app.ret.toFixed(1)}`, 10, 46);
      }
    }

    function drawAttention() {
      const cv = $("attn"), ctx = cv.getContext("2d"), n = nFeatures(), M = app.policy.queries;
      const cell = Math.max(8, Math.min(26, Math.floor((cv.width - 50) / Math.max(n, 1)))), x0 = 50, y0 = 8;
      ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, cv.width, cv.height);
      ctx.font = "11px monospace"; ctx.fillStyle = "#222";
      if (!M) {
        ctx.fillText(`the ${app.model.kind} has no attention: it reads its inputs by position,`, 10, 24);
        ctx.fillText("so after a shuffle it sees a scrambled state.", 10, 40);
        return;
      }
      const A = app.attention;
      for (let m = 0; m < M; m++) {
        ctx.fillStyle = "#222"; ctx.fillText(`q${m}`, 8, y0 + m * cell + cell * 0.7);
        for (let i = 0; i < n; i++) {
          const v = A ? A[m * n + i] : 0, w = Math.round(255 * (1 - Math.min(1, Math.abs(v))));
          ctx.fillStyle = v >= 0 ? `rgb(255,${w},${w})` : `rgb(${w},${w},255)`;
          ctx.fillRect(x0 + i * cell, y0 + m * cell, cell - 1, cell - 1);
        }
      }
      for (let i = 0; i < n; i++) {  // which feature sits at each input position
        const k = app.perm[i], name = k < 5 ? FEATURES[k] : `n${k - 4}`;
        ctx.save(); ctx.translate(x0 + i * cell + cell * 0.6, y0 + M * cell + 6); ctx.rotate(Math.PI / 2);
        ctx.fillStyle = k < 5 ? "#222" : "#888"; ctx.fillText(name, 0, 0); ctx.restore();
      }
    }

    function draw() {
      drawScene();
      drawAttention();
      const order = Array.from(app.perm, (k) => (k < 5 ? FEATURES[k] : `n${k - 4}`));
      $("status").textContent = `inputs in order: [${order.join(", ")}]   ${app.fps.toFixed(0)} frames/s`;
      $("pause").textContent = app.paused ? "Play" : "Pause";
      $("step").disabled = !app.paused;
    }

    let frames = 0, t0 = 0;
    function frame(now) {
      if (!app.paused) {
        for (let k = 0; k < app.speed; k++) tick();
        if (app.done && ++app.doneFrames > 90) reset();  // show the end for 1.5 s, then start again
      }
      draw();
      frames++;
      if (now - t0 > 1000) { app.fps = (frames * 1000) / (now - t0); frames = 0; t0 = now; document.body.dataset.fps = app.fps.toFixed(1); }
      requestAnimationFrame(frame);
    }

    // controls
    DATA.models.forEach((m, i) => $("model").add(new Option(`${m.name} (${m.kind})`, i)));
    $("start").value = DATA.models[0].env.start;
    $("model").onchange = () => setModel(parseInt($("model").value, 10));
    $("start").onchange = reset;
    $("reset").onclick = reset;
    $("shuffle").onclick = () => { app.perm = randomPerm(nFeatures(), rng); };
    $("unshuffle").onclick = () => { app.perm = identity(nFeatures()); };
    $("every").onchange = () => { app.every = Math.max(0, parseInt($("every").value, 10) || 0); };
    $("noise").onchange = () => setNoise(Math.max(0, Math.min(50, parseInt($("noise").value, 10) || 0)));
    $("pause").onclick = () => { app.paused = !app.paused; draw(); };
    $("step").onclick = () => { tick(); draw(); };
    $("speed").onchange = () => { app.speed = parseInt($("speed").value, 10); };
    const first = Math.max(0, Math.min(DATA.models.length - 1, parseInt(query.get("model") || "0", 10) || 0));
    $("model").value = first;
    setModel(first);
    draw();
    requestAnimationFrame(frame);
    return app;
  }

  window.PINN = { envParams, envStep, envReset, envObs, accelerations, makePolicy, posTable, mulberry32, runTests, bench };

  const query = new URLSearchParams(location.search), test = query.get("test");
  if (test !== null) {  // index.html?test=FILE.js: parity checks, results as JSON in #pinn-test
    const out = $("pinn-test");
    if (!/^[\w.-]+\.js$/.test(test)) { out.textContent = JSON.stringify({ error: `bad test file ${test}` }); return; }
    const s = document.createElement("script");
    s.src = test;
    s.onload = () => {
      try { out.textContent = JSON.stringify(runTests(window.PINN_TEST_INPUT)); }
      catch (e) { out.textContent = JSON.stringify({ error: String(e && e.stack || e) }); }
    };
    s.onerror = () => { out.textContent = JSON.stringify({ error: `cannot load ${test}` }); };
    document.body.appendChild(s);
  } else if (query.get("bench") !== null) {
    $("pinn-test").textContent = JSON.stringify({ bench: bench(parseInt(query.get("bench"), 10) || 1000) });
  } else {
    window.PINN.app = App();
  }
})();
