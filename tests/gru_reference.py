# numpy float64 reference for tests/gru.rs and tests/rnn_bidirectional.rs, written from
# PyTorch's documented GRU and LSTM equations (gates r, z, n and i, f, g, o) and packed-sequence
# semantics, independent of wgml. Gradients are central differences in float64.
# Run: python3 tests/gru_reference.py   (needs numpy)
import numpy as np

def fill(n, a, b, m=11, s=10.0):
    return np.array([((k * a + b) % m - m // 2) / s for k in range(n)], dtype=np.float64)

def sig(v):
    return 1.0 / (1.0 + np.exp(-v))

def gru_dir(x, h, wih, whh, bih, bhh, lens, reverse):
    # x [T, B, I], h [B, H]; returns out [T, B, H] (zeros at padded steps) and h_n [B, H]
    T, B, _ = x.shape
    H = h.shape[1]
    out = np.zeros((T, B, H))
    hn = np.zeros((B, H))
    for b in range(B):
        hb = h[b].copy()
        steps = range(lens[b] - 1, -1, -1) if reverse else range(lens[b])
        for t in steps:
            gi = wih @ x[t, b] + bih
            gh = whh @ hb + bhh
            r = sig(gi[:H] + gh[:H])
            z = sig(gi[H:2 * H] + gh[H:2 * H])
            n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
            hb = (1 - z) * n + z * hb
            out[t, b] = hb
        hn[b] = hb
    return out, hn

def lstm_dir(x, h, c, wih, whh, bih, bhh, lens, reverse):
    T, B, _ = x.shape
    H = h.shape[1]
    out = np.zeros((T, B, H))
    hn = np.zeros((B, H))
    cn = np.zeros((B, H))
    for b in range(B):
        hb, cb = h[b].copy(), c[b].copy()
        steps = range(lens[b] - 1, -1, -1) if reverse else range(lens[b])
        for t in steps:
            zz = wih @ x[t, b] + bih + whh @ hb + bhh
            i, f, g, o = sig(zz[:H]), sig(zz[H:2 * H]), np.tanh(zz[2 * H:3 * H]), sig(zz[3 * H:])
            cb = f * cb + i * g
            hb = o * np.tanh(cb)
            out[t, b] = hb
        hn[b], cn[b] = hb, cb
    return out, hn, cn

def numgrad(f, args, k):
    g = np.zeros_like(args[k])
    flat = g.reshape(-1)
    for e in range(flat.size):
        ap = [a.copy() for a in args]
        am = [a.copy() for a in args]
        ap[k].reshape(-1)[e] += 1e-6
        am[k].reshape(-1)[e] -= 1e-6
        flat[e] = (f(ap) - f(am)) / 2e-6
    return g

def show(name, v):
    print("%s: &[%s]," % (name, ", ".join("%.8f" % x for x in np.asarray(v).reshape(-1))))

# 1. One GRU layer (the op), T=2, B=2, I=3, H=2; L = Σ wo·out + Σ wh·h_n.
T, B, I, H = 2, 2, 3, 2
G = 3 * H
args = [fill(T * B * I, 7, 1).reshape(T, B, I), fill(B * H, 3, 2).reshape(B, H),
        fill(G * I, 4, 3).reshape(G, I), fill(G * H, 6, 5).reshape(G, H),
        fill(G, 2, 7), fill(G, 9, 1)]
wo = fill(T * B * H, 5, 3).reshape(T, B, H)
wh = fill(B * H, 7, 2).reshape(B, H)
full = [T] * B
def gru_loss(a):
    out, hn = gru_dir(*a, full, False)
    return (out * wo).sum() + (hn * wh).sum()
out, hn = gru_dir(*args, full, False)
print("== gru op")
show("out", out)
show("h_n", hn)
for k, name in enumerate(["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"]):
    show("d" + name, numgrad(gru_loss, args, k))

# 2. Bidirectional one-layer GRU and LSTM over a padded batch: T=3, B=3, I=2, H=2,
#    lengths [3, 1, 2]; parameters filled in PyTorch's order (weight_ih_l0, weight_hh_l0,
#    bias_ih_l0, bias_hh_l0, then the _reverse ones), each fill(n, 3 + 2p, p + 1) for p = 0..8.
T, B, I, H = 3, 3, 2, 2
lens = [3, 1, 2]
x = fill(T * B * I, 5, 2).reshape(T, B, I)
wy = fill(T * B * 2 * H, 4, 1).reshape(T, B, 2 * H)
whn = fill(2 * B * H, 6, 3).reshape(2, B, H)
for kind, gates in [("gru", 3), ("lstm", 4)]:
    G = gates * H
    shapes = [(G, I), (G, H), (G,), (G,)] * 2
    params = [fill(int(np.prod(s)), 3 + 2 * p, p + 1).reshape(s) for p, s in enumerate(shapes)]
    def run(a):
        x, ps = a[0], a[1:]
        h0 = np.zeros((B, H))
        if kind == "gru":
            of, hf = gru_dir(x, h0, *ps[:4], lens, False)
            orr, hr = gru_dir(x, h0, *ps[4:], lens, True)
            cs = None
        else:
            of, hf, cf = lstm_dir(x, h0, h0, *ps[:4], lens, False)
            orr, hr, cr = lstm_dir(x, h0, h0, *ps[4:], lens, True)
            cs = np.stack([cf, cr])
        return np.concatenate([of, orr], axis=2), np.stack([hf, hr]), cs
    def loss(a):
        y, hs, cs = run(a)
        l = (y * wy).sum() + (hs * whn).sum()
        if cs is not None:
            l += (cs * whn[::-1]).sum()
        return l
    a = [x] + params
    y, hs, cs = run(a)
    print("== bidirectional %s, lengths %s" % (kind, lens))
    show("y", y)
    show("h_n", hs)
    if cs is not None:
        show("c_n", cs)
    show("dx", numgrad(loss, a, 0))
    show("dweight_hh_l0_reverse", numgrad(loss, a, 6))
