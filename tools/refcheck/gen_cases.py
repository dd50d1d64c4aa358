#!/usr/bin/python3
"""gen_cases.py — random conformance cases for dlc, computed by PyTorch.

usage: gen_cases.py --seed S --count N --out DIR [--family NAME]

Writes N case folders DIR/rSEED_III_FAMILY/ in the format of
../../../shared/conformance (model.dl, params, feed, expected_out,
expected_grads, expected_params .safetensors), each a random but valid
`.dl` model (SPEC.md) with one training step computed by PyTorch (CPU,
float32). The same seed gives the same cases.

Every case is also computed in float64; a case whose float32 result is not
within a quarter of check.py's tolerance of the float64 one (cancellation,
an Adam step on a gradient that is rounding noise, ...) is drawn again, so a
mismatch with dlc is dlc's and not the reference's rounding.

Needs Debian's python3-torch (1.13) and python3-numpy; run with
/usr/bin/python3. Families (weights): conv (CNNs: conv2d with random
stride/padding/dilation/groups/kernel, pooling, batch norm, residual adds,
fn blocks), gemm (dense layers with skinny and odd shapes, batched matmuls),
expr (random elementwise/reduction/shape-op expressions with broadcasting),
loss (every loss of the spec, alone or combined).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

RTOL, ATOL = 1e-4, 1e-5
MARGIN = 0.25  # share of the tolerance the float32 reference may use

# ---------------------------------------------------------------------------
# safetensors (F32 / I32), as ../../../shared/conformance/st.py


def save_st(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name], order="C")  # keeps rank 0 (ascontiguousarray would not)
        dt = {np.dtype("float32"): "F32", np.dtype("int32"): "I32"}[a.dtype]
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------------------
# expressions: .dl text with its precedence, static shape, and a function
# computing the value in PyTorch from the environment of bound names

ADD, MUL, NEG, POW, ATOM = 1, 2, 3, 4, 5


class E:
    def __init__(self, text, prec, shape, fn, dtype="f32"):
        self.text, self.prec, self.shape, self.fn, self.dtype = text, prec, tuple(shape), fn, dtype


class Reject(Exception):
    """The drawn model or data is unusable; draw again."""


def bshape(a, b):
    return tuple(np.broadcast_shapes(tuple(a), tuple(b)))


class Builder:
    def __init__(self, rng, name):
        self.rng = rng
        self.name = name
        self.head = []      # comment, model, const lines
        self.decls = []     # fn definitions and declarations come before use
        self.body = []      # statements (declarations may be interleaved too)
        self.leaves = {}    # name -> dict(kind, data, frozen)
        self.stmts = []     # (name, fn) in order
        self.shapes = {}    # current binding -> shape
        self.outputs = []
        self.metrics = []   # (name, E)
        self.loss = None
        self.opt = None
        self.optstate = {}  # leaf name -> dict of initial optimizer state
        self.fresh_n = 0
        self.fn_counts = {}

    # -- small random helpers
    def r(self):
        return self.rng.random()

    def choice(self, xs, p=None):
        return xs[self.rng.choice(len(xs), p=p)]

    def randint(self, lo, hi):  # inclusive
        return int(self.rng.integers(lo, hi + 1))

    def fresh(self, base):
        self.fresh_n += 1
        return f"{base}_{self.fresh_n}"

    def num(self, v, digits=3):
        """A positive number literal; returns (text, value)."""
        v = float(f"{v:.{digits}g}")
        forms = [repr(v)]
        if v == int(v) and abs(v) < 100:
            forms.append(str(int(v)))
        if 0 < v < 1:
            forms.append(repr(v)[1:] if repr(v).startswith("0.") else repr(v))
            forms.append(f"{v:.{digits - 1}e}".replace("e-0", "e-"))
        t = self.choice(forms)
        return t, float(t)

    def lit(self, v, digits=3):
        t, val = self.num(v, digits)
        return E(t, ATOM, (), lambda env, val=val: val)

    def typ(self, shape, dtype="f32"):
        if len(shape) == 0:
            return f"{dtype}[]"
        return f"{dtype}[{', '.join(self.dim_text(d, i) for i, d in enumerate(shape))}]"

    def dim_text(self, d, i):
        if i == 0 and getattr(self, "B", None) == d and self.r() < 0.8:
            return "B"
        return str(d)

    # -- declarations
    def ref(self, name):
        shape = self.shapes[name]
        dtype = self.leaves[name]["dtype"] if name in self.leaves else "f32"
        return E(name, ATOM, shape, lambda env, name=name: env[name], dtype)

    def leaf(self, kind, name, shape, data, dtype="f32", init=None, frozen=False, declare=True):
        self.leaves[name] = dict(kind=kind, data=data, dtype=dtype, frozen=frozen)
        self.shapes[name] = tuple(shape)
        if declare:
            line = f"{kind} {name} : {self.typ(shape, dtype)}"
            if init is not None:
                line += f" = {init}"
            if frozen:
                line += " frozen"
            self.body.append(line)
        return self.ref(name)

    def input(self, name, shape, scale=1.0):
        return self.leaf("input", name, shape, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def label_f(self, name, shape, data):
        return self.leaf("label", name, shape, data.astype(np.float32))

    def label_i(self, name, n, classes):
        return self.leaf("label", name, (n,), self.rng.integers(0, classes, n).astype(np.int32), dtype="i32")

    def init_text(self, shape):
        if len(shape) == 4 or len(shape) == 2:
            forms = ["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "normal(std=0.1)",
                     "uniform(-0.1, 0.1)", "zeros"]
        else:
            forms = ["zeros", "ones", "constant(0.5)", "normal(std=0.02)", "uniform(-0.1, .1)"]
        return self.choice(forms)

    def param(self, name, shape, std=None, data=None, frozen=False, declare=True, init=None):
        if data is None:
            if std is None:
                fan = shape[0] if len(shape) in (1, 2) else int(np.prod(shape[1:]))
                std = 1.0 / np.sqrt(max(fan, 1))
            data = self.rng.standard_normal(shape) * std
        return self.leaf("param", name, shape, np.asarray(data, dtype=np.float32),
                         init=init or self.init_text(shape), frozen=frozen, declare=declare)

    def state(self, name, shape, data, declare=True, init="zeros"):
        return self.leaf("state", name, shape, np.asarray(data, dtype=np.float32), init=init, declare=declare)

    def let(self, name, e, comment=None):
        line = f"{name} = {e.text}"
        if comment:
            line += f"  # {comment}"
        self.body.append(line)
        self.stmts.append((name, e.fn))
        self.shapes[name] = e.shape
        if name in self.leaves:
            raise AssertionError("rebinding a leaf")
        return E(name, ATOM, e.shape, lambda env, name=name: env[name], e.dtype)

    def tmp(self, e, base="t"):
        """Binds e to a fresh name (so long expressions stay readable)."""
        return self.let(self.fresh(base), e)

    # -- operators
    def bin(self, op, a, b):
        lvl = ADD if op in "+-" else MUL
        ta = f"({a.text})" if a.prec < lvl else a.text
        tb = f"({b.text})" if b.prec <= lvl else b.text
        # a right operand that is a unary minus needs no parentheses: a * -b
        if b.prec == NEG and self.r() < 0.5:
            tb = b.text
        fa, fb = a.fn, b.fn
        if op == "@":
            fn = lambda env: torch.matmul(fa(env), fb(env))  # noqa: E731
            shape = tuple(torch.matmul(torch.zeros(a.shape), torch.zeros(b.shape)).shape)
        else:
            f = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
                 "/": lambda x, y: x / y}[op]
            fn = lambda env: f(fa(env), fb(env))  # noqa: E731
            shape = bshape(a.shape, b.shape)
        sp = " " if op != "@" or self.r() < 0.8 else ""
        return E(f"{ta}{sp}{op}{sp}{tb}", lvl, shape, fn)

    def neg(self, a):
        t = f"-({a.text})" if a.prec < NEG or a.prec == NEG else f"-{a.text}"
        fa = a.fn
        return E(t, NEG, a.shape, lambda env: -fa(env))

    def pow(self, a, p_text):
        p = float(p_text)
        fa = a.fn
        if self.r() < 0.5:
            t = f"({a.text})" if a.prec <= POW else a.text
            return E(f"{t} ** {p_text}", POW, a.shape, lambda env: fa(env) ** p)
        return E(f"pow({a.text}, {p_text})", ATOM, a.shape, lambda env: torch.pow(fa(env), p))

    def call(self, name, args, kwargs, shape, fn, dtype="f32"):
        parts = [a.text if isinstance(a, E) else str(a) for a in args]
        for k, v in kwargs:
            parts.append(f"{k}={v}")
        sep = ", "
        if len(parts) > 2 and self.r() < 0.15:
            sep = ",\n    "  # a newline inside () continues the statement
        return E(f"{name}({sep.join(parts)})", ATOM, shape, fn, dtype)

    def unary(self, name, a, opt=None):
        """name(a) or name(a, KW=TEXT) with opt = (KW, TEXT, VALUE)."""
        fa = a.fn
        v = opt[2] if opt else None
        fns = {"relu": kinked(torch.relu), "sigmoid": torch.sigmoid, "tanh": torch.tanh, "exp": torch.exp,
               "log": torch.log, "sqrt": torch.sqrt, "abs": kinked(torch.abs), "neg": torch.neg,
               "elu": lambda t: F.elu(t, alpha=1.0 if v is None else v),
               "leaky_relu": kinked(lambda t: F.leaky_relu(t, negative_slope=0.01 if v is None else v))}
        f = fns[name]
        kws = [(opt[0], opt[1])] if opt else []
        return self.call(name, [a], kws, a.shape, lambda env: f(fa(env)))

    def activation(self, a, allowed=("relu", "tanh", "sigmoid", "elu", "leaky_relu", "none")):
        act = self.choice(list(allowed))
        if act == "none":
            return a
        opt = None
        if act == "elu" and self.r() < 0.6:
            opt = ("alpha",) + self.num(self.rng.uniform(0.2, 2.0), 2)
        if act == "leaky_relu" and self.r() < 0.6:
            opt = ("slope",) + self.num(self.rng.uniform(0.01, 0.3), 2)
        return self.unary(act, a, opt)

    def reduce(self, kind, a, axes=None, keepdim=False):
        fa = a.fn
        rank = len(a.shape)
        args = []
        if axes is not None:
            ax_text = [str(x - rank if self.r() < 0.25 else x) for x in axes]
            if len(axes) == 1 and self.r() < 0.6:
                args.append(("axis", ax_text[0]))
            else:
                args.append(("axis", "[" + ", ".join(ax_text) + "]"))
            if keepdim or self.r() < 0.2:
                args.append(("keepdim", "true" if keepdim else "false"))
        dims = list(range(rank)) if axes is None else list(axes)
        if keepdim:
            shape = tuple(1 if i in dims else d for i, d in enumerate(a.shape))
        else:
            shape = tuple(d for i, d in enumerate(a.shape) if i not in dims)
        if kind == "sum":
            fn = lambda env: torch.sum(fa(env), dim=dims, keepdim=keepdim) if dims else fa(env)  # noqa: E731
        elif kind == "mean":
            fn = lambda env: torch.mean(fa(env), dim=dims, keepdim=keepdim)  # noqa: E731
        else:
            fn = lambda env: torch.amax(fa(env), dim=dims, keepdim=keepdim)  # noqa: E731
        return self.call(kind, [a], args, shape, fn)

    def conv2d(self, x, w, b, stride, pad, dil, groups):
        fx, fw = x.fn, w.fn
        fb = b.fn if b is not None else (lambda env: None)
        kw = []

        def pair_text(v, default):
            if v[0] == v[1]:
                if v[0] == default and self.r() < 0.7:
                    return None
                return str(v[0]) if self.r() < 0.8 else f"[{v[0]}, {v[1]}]"
            return f"[{v[0]}, {v[1]}]"
        for k, v, d in (("stride", stride, 1), ("pad", pad, 0), ("dilation", dil, 1)):
            t = pair_text(v, d)
            if t is not None:
                kw.append((k, t))
        if groups != 1 or self.r() < 0.1:
            kw.append(("groups", str(groups)))
        if self.r() < 0.3:
            self.rng.shuffle(kw)
        N, C, H, W = x.shape
        Co, _, kh, kw_ = w.shape
        oh = (H + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
        ow = (W + 2 * pad[1] - dil[1] * (kw_ - 1) - 1) // stride[1] + 1
        assert oh >= 1 and ow >= 1
        fn = lambda env: F.conv2d(fx(env), fw(env), fb(env), stride=tuple(stride), padding=tuple(pad),  # noqa: E731
                                  dilation=tuple(dil), groups=groups)
        args = [x, w] + ([b] if b is not None else [])
        return self.call("conv2d", args, kw, (N, Co, oh, ow), fn)

    def pool(self, kind, x, k, s, p, s_given):
        fx = x.fn
        N, C, H, W = x.shape
        oh, ow = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
        assert oh >= 1 and ow >= 1
        kw = []
        if s_given:
            kw.append(("stride", str(s)))
        if p:
            kw.append(("pad", str(p)))
        if kind == "max":
            fn = lambda env: F.max_pool2d(fx(env), k, stride=s, padding=p)  # noqa: E731
        else:
            fn = lambda env: F.avg_pool2d(fx(env), k, stride=s, padding=p)  # noqa: E731
        return self.call(f"{kind}pool2d", [x, k], kw, (N, C, oh, ow), fn)

    def batchnorm(self, x, gamma, beta, rm, rv):
        fx, fg, fb = x.fn, gamma.fn, beta.fn
        kw = []
        eps, mom = 1e-5, 0.1
        if self.r() < 0.5:
            t, eps = self.num(self.choice([1e-5, 1e-3, 1e-4, 0.01]))
            kw.append(("eps", t))
        if self.r() < 0.5:
            t, mom = self.num(self.choice([0.1, 0.2, 0.05, 0.5]))
            kw.append(("momentum", t))
        rmn, rvn = rm.text, rv.text
        fn = lambda env: F.batch_norm(fx(env), env[rmn], env[rvn], fg(env), fb(env), training=env["@train"],  # noqa: E731
                                      momentum=mom, eps=eps)
        return self.call("batchnorm", [x, gamma, beta, rm, rv], kw, x.shape, fn)

    def flatten(self, x):
        fx = x.fn
        n = x.shape[0]
        return self.call("flatten", [x], [], (n, int(np.prod(x.shape[1:]))), lambda env: torch.flatten(fx(env), 1))

    def gap(self, x):
        fx = x.fn
        return self.call("global_avgpool", [x], [], x.shape[:2], lambda env: torch.mean(fx(env), dim=(2, 3)))

    # -- losses (p: predictions, t: targets)
    def loss_of(self, kind, p, t, **kw):
        fp, ft = p.fn, t.fn
        args = []

        def attr(name, default):  # a loss attribute: its value, and its .dl text when given
            if name + "_text" in kw:
                args.append((name, kw[name + "_text"]))
            return kw.get(name, default)

        if kind == "mse":
            fn = lambda env: F.mse_loss(fp(env), ft(env))  # noqa: E731
        elif kind == "l1":
            fn = lambda env: F.l1_loss(fp(env), ft(env))  # noqa: E731
        elif kind == "huber":
            delta = attr("delta", 1.0)
            fn = lambda env: F.huber_loss(fp(env), ft(env), delta=delta)  # noqa: E731
        elif kind == "cross_entropy":
            fn = lambda env: F.cross_entropy(fp(env), ft(env).long())  # noqa: E731
        elif kind == "bce_with_logits":
            fn = lambda env: F.binary_cross_entropy_with_logits(fp(env), ft(env))  # noqa: E731
        elif kind == "multi_margin":
            margin = attr("margin", 1.0)
            fn = lambda env: F.multi_margin_loss(fp(env), ft(env).long(), margin=margin)  # noqa: E731
        else:
            raise AssertionError(kind)
        return self.call(kind, [p, t], args, (), fn)

    def classifier_loss(self, logits, n, classes, kinds=None):
        """A loss on [n, classes] logits with a fresh label; returns the loss E."""
        kinds = kinds or ["cross_entropy"] * 5 + ["multi_margin", "bce_with_logits", "mse"]
        kind = self.choice(kinds)
        if classes == 1 and kind in ("cross_entropy", "multi_margin"):
            kind = "bce_with_logits"
        if kind in ("cross_entropy", "multi_margin"):
            y = self.label_i("y", n, classes)
            kw = {}
            if kind == "multi_margin" and self.r() < 0.5:
                t, v = self.num(self.rng.uniform(0.3, 2.0), 2)
                kw = dict(margin=v, margin_text=t)
            if self.r() < 0.5:
                self.metrics.append(("acc", self.accuracy(logits, y)))
            if self.r() < 0.2:
                fl = logits.fn
                self.let("pred", self.call("argmax", [logits, "1" if self.r() < 0.5 else "-1"], [], (n,),
                                           lambda env: torch.argmax(fl(env), 1).to(torch.int32), dtype="i32"))
                self.outputs.append("pred")
            return self.loss_of(kind, logits, y, **kw)
        if kind == "bce_with_logits":
            t = self.label_f("t", (n, classes), self.rng.uniform(0, 1, (n, classes)))
            return self.loss_of(kind, logits, t)
        t = self.label_f("t", (n, classes), self.rng.standard_normal((n, classes)))
        return self.loss_of(kind, logits, t)

    def accuracy(self, logits, y):
        fl, fy = logits.fn, y.fn
        return self.call("accuracy", [logits, y], [], (),
                         lambda env: (torch.argmax(fl(env), 1) == fy(env).long()).to(fl(env).dtype).mean())

    # -- the optimizer
    def optimizer(self):
        r = self.r()
        trainable = [n for n, L in self.leaves.items() if L["kind"] == "param" and not L["frozen"]]
        if getattr(self, "sgd_only", False):
            r = 0.0
        if r < 0.45:
            lr_t, lr = self.num(self.rng.uniform(0.01, 0.5), 2)
            mom = 0.0
            args = [lr_t if self.r() < 0.3 else f"lr={lr_t}"]
            nesterov = False
            wd = 0.0
            if self.r() < 0.6:
                mt, mom = self.num(self.choice([0.9, 0.5, 0.99, 0.8]))
                args.append(f"momentum={mt}")
                if self.r() < 0.3:
                    nesterov = True
                    args.append("nesterov=true")
            if self.r() < 0.4:
                wt, wd = self.num(self.choice([1e-4, 1e-3, 0.01, 0.05]))
                args.append(f"weight_decay={wt}")
            if self.r() < 0.1 and not nesterov:
                args.append("nesterov=false")
            self.opt = ("sgd", dict(lr=lr, momentum=mom, weight_decay=wd, nesterov=nesterov))
            if mom > 0 and self.r() < 0.5:  # resume from momentum buffers
                for n in trainable:
                    self.optstate[n] = {"momentum": self.rng.standard_normal(self.leaves[n]["data"].shape) * 0.05}
            return f"sgd({', '.join(args)})"
        kind = "adam" if r < 0.75 else "adamw"
        lr, b1, b2, eps, wd = 1e-3, 0.9, 0.999, 1e-8, (0.0 if kind == "adam" else 0.01)
        args = []
        if self.r() < 0.85:
            t, lr = self.num(self.choice([1e-3, 0.01, 0.05, 3e-3, 0.1]))
            args.append(f"lr={t}")
        if self.r() < 0.3:
            t, b1 = self.num(self.choice([0.8, 0.9, 0.5]))
            args.append(f"beta1={t}")
        if self.r() < 0.3:
            t, b2 = self.num(self.choice([0.99, 0.999, 0.9]))
            args.append(f"beta2={t}")
        if self.r() < 0.3:
            t, eps = self.num(self.choice([1e-6, 1e-8, 1e-3]))
            args.append(f"eps={t}")
        if self.r() < 0.5:
            t, wd = self.num(self.choice([1e-4, 0.01, 0.1, 0.05]))
            args.append(f"weight_decay={t}")
        self.opt = (kind, dict(lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd))
        if self.r() < 0.35:  # resume: moments and a step count
            self.opt_step = self.randint(1, 30)
            for n in trainable:
                sh = self.leaves[n]["data"].shape
                self.optstate[n] = {"m": self.rng.standard_normal(sh) * 0.01,
                                    "v": np.abs(self.rng.standard_normal(sh)) * 1e-3}
        return f"{kind}({', '.join(args)})"

    # -- output
    def finish(self, loss_e):
        self.let("loss", loss_e)
        self.loss = "loss"
        if getattr(self, "fixed_opt", None):
            opt_text, self.opt = self.fixed_opt
        else:
            opt_text = self.optimizer()
        lines = list(self.head) + list(self.decls) + list(self.body)
        if self.outputs:
            lines.append("output " + ", ".join(self.outputs))
        for name, e in self.metrics:
            lines.append(f"metric {name} = {e.text}")
        lines.append(f"train loss with {opt_text}")
        self.text = "\n".join(lines) + "\n"

    def infer(self, dt):
        """Inference (`dlrun predict`) at dtype dt: outputs that do not depend
        on a label, batch norm on the running statistics."""
        env = {"@train": False}
        for name, L in self.leaves.items():
            if L["kind"] == "label":
                continue
            t = torch.tensor(L["data"])
            env[name] = t.to(dt) if L["dtype"] == "f32" else t
        gone = {n for n, L in self.leaves.items() if L["kind"] == "label"}
        with torch.no_grad():
            for name, fn in self.stmts:
                try:
                    env[name] = fn(env)
                except KeyError as e:  # reads a label (or a value that does)
                    if e.args[0] not in gone:
                        raise
                    gone.add(name)
                    env.pop(name, None)
        return {n: env[n].clone() for n in self.outputs if n in env}

    def run(self, dt):
        """One training step in PyTorch at dtype dt; returns (out, grads, params)."""
        env = {"@train": True}
        for name, L in self.leaves.items():
            t = torch.tensor(L["data"])
            if L["dtype"] == "f32":
                t = t.to(dt)
            if L["kind"] == "param" and not L["frozen"]:
                t.requires_grad_(True)
            env[name] = t
        for name, fn in self.stmts:
            env[name] = fn(env)
        out = {}
        for name in self.outputs:
            out[name] = env[name].detach().clone()
        for name, e in self.metrics:
            with torch.no_grad():
                out[name] = e.fn(env).detach().reshape(1)
        loss = env[self.loss]
        out["loss"] = loss.detach().reshape(1)
        trainable = [n for n, L in self.leaves.items() if L["kind"] == "param" and not L["frozen"]]
        if not loss.requires_grad:
            raise Reject("nothing to train")
        loss.backward()
        grads = {}
        # a param the loss does not depend on has no gradient in PyTorch: the
        # optimizer leaves it (and its state) alone; dlc reports a zero gradient
        self.unused = {n for n in trainable if env[n].grad is None}
        for n in trainable:
            g = env[n].grad
            grads[n] = torch.zeros_like(env[n]) if g is None else g.detach().clone()
        kind, kw = self.opt
        ps = [env[n] for n in trainable]
        opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind](ps, **kw)
        for n in trainable:
            st = self.optstate.get(n)
            if not st or n in self.unused:
                continue
            p = env[n]
            if kind == "sgd":
                opt.state[p] = {"momentum_buffer": torch.tensor(st["momentum"]).to(dt)}
            else:
                opt.state[p] = {"step": torch.tensor(float(self.opt_step)),
                                "exp_avg": torch.tensor(st["m"]).to(dt),
                                "exp_avg_sq": torch.tensor(st["v"]).to(dt)}
        opt.step()
        params = {}
        for n, L in self.leaves.items():
            if L["kind"] in ("param", "state"):
                params[n] = env[n].detach().clone()
        for n in trainable:
            if n in self.unused:
                continue
            s = opt.state.get(env[n], {})
            if kind == "sgd" and "momentum_buffer" in s and s["momentum_buffer"] is not None:
                params[n + "@momentum"] = s["momentum_buffer"].clone()
            if kind != "sgd":
                params[n + "@m"] = s["exp_avg"].clone()
                params[n + "@v"] = s["exp_avg_sq"].clone()
        if kind != "sgd":
            params["@step"] = torch.tensor(getattr(self, "opt_step", 0) + 1, dtype=torch.int32)
        return out, grads, params

    def files(self):
        params = {}
        feed = {}
        for n, L in self.leaves.items():
            if L["kind"] in ("param", "state"):
                params[n] = L["data"]
            else:
                feed[n] = L["data"]
        kind = self.opt[0]
        for n, st in self.optstate.items():
            if n in self.unused:
                continue
            if kind == "sgd":
                params[n + "@momentum"] = st["momentum"].astype(np.float32)
            else:
                params[n + "@m"] = st["m"].astype(np.float32)
                params[n + "@v"] = st["v"].astype(np.float32)
        if self.optstate and kind != "sgd":
            params["@step"] = np.array(self.opt_step, dtype=np.int32)
        return params, feed


def to_np(d):
    out = {}
    for k, v in d.items():
        a = v.numpy()
        out[k] = a.astype(np.int32) if a.dtype.kind in "iub" else a.astype(np.float32)
    return out


# Inputs of kinked functions (relu, leaky_relu, abs) seen by the last run:
# a draw is taken again when one lies within KINK of the kink without being
# exactly on it, where rounding alone (a bias added before or after the sum)
# decides the derivative's side.
KINK = 1e-5
_kink_min = [float("inf")]


def kinked(f):
    def g(t):
        a = t.detach().abs()
        a = a[a > 0]
        if a.numel():
            _kink_min[0] = min(_kink_min[0], float(a.min()))
        return f(t)
    return g


def kink_safe():
    return _kink_min[0] >= KINK


def adam_safe(b, r32, r64):
    """No gradient element that Adam would turn from noise into a step of lr:
    tiny in float32 (< 1e-6) while not exactly 0 in both float32 and float64,
    or exactly 0 beside nonzero elements of its tensor (a sum of terms that
    cancel, e.g. a bias under multi_margin: exactly 0 only in PyTorch's order
    of summation, rounding noise of ~1e-9 in another, which Adam turns into a
    step of lr; seed 245 case 9)."""
    if b.opt[0] == "sgd":
        return True
    g32, g64 = r32[1], r64[1]
    for k in g32:
        x, y = g32[k].numpy().astype(np.float64), g64[k].numpy()
        exact = (x == 0) & (y == 0)
        if np.any((np.abs(x) < 1e-6) & ~exact):
            return False
        if np.any(exact) and not np.all(exact):
            return False
    return True


def stable(r32, r64):
    """float32 and float64 references agree within MARGIN of the tolerance."""
    for a, b in zip(r32, r64):
        for k in b:
            x, y = a[k].numpy().astype(np.float64), b[k].numpy().astype(np.float64)
            if not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
                return f"{k} not finite"
            if np.any(np.abs(y) > 1e4):
                return f"{k} too large"
            if np.any(np.abs(x - y) > MARGIN * (ATOL + RTOL * np.abs(y))):
                return f"{k} float32 differs from float64"
    return None


# ---------------------------------------------------------------------------
# families

ODD_BATCHES = [1, 2, 3, 5, 7, 9, 13]
GEMM_BATCHES = [1, 3, 5, 7, 13, 17, 31, 33, 50, 63, 64, 65, 100, 127, 128]


def conv_config(b, C, H, W, same=False, wide=False):
    """A random valid conv2d config on input [., C, H, W] -> (Cout, g, k, s, p, d)."""
    for _ in range(200):
        g = b.choice([1, 1, 1, 2, 3, 4, C])
        if C % g:
            continue
        if same:  # stride 1, output as large as the input, Cout = C
            g = b.choice([d for d in range(1, C + 1) if C % d == 0])
            kh, kw = b.choice([1, 3, 3, 5]), b.choice([1, 3, 3])
            d = (b.choice([1, 1, 2]), b.choice([1, 1, 2]))
            p = (d[0] * (kh - 1) // 2, d[1] * (kw - 1) // 2)
            return C, g, (kh, kw), (1, 1), p, d
        depthwise = g == C and C > 1
        top = b.choice([33, 64]) if wide else 12
        cout = g * (b.choice([1, 2]) if depthwise else b.randint(1, max(1, top // g)))
        sq = b.r() < 0.6
        kh = b.choice([1, 2, 3, 3, 3, 4, 5])
        kw = kh if sq else b.choice([1, 2, 3, 5, 7])
        s = (b.choice([1, 1, 2, 3]),) * 2 if b.r() < 0.7 else (b.choice([1, 2, 3]), b.choice([1, 2, 3]))
        d = (1, 1) if b.r() < 0.7 else (b.choice([1, 2, 3]), b.choice([1, 2]))
        ph, pw = b.randint(0, max(0, d[0] * (kh - 1))), b.randint(0, max(0, d[1] * (kw - 1)))
        if b.r() < 0.5:
            pw = ph if ph <= d[1] * (kw - 1) else pw
        oh = (H + 2 * ph - d[0] * (kh - 1) - 1) // s[0] + 1
        ow = (W + 2 * pw - d[1] * (kw - 1) - 1) // s[1] + 1
        if oh >= 1 and ow >= 1:
            return cout, g, (kh, kw), s, (ph, pw), d
    raise Reject("no conv config")


def conv_layer(b, h, wide, bias_ok=True, bn_ok=True, cfg=None):
    """conv2d [+ bias] [+ batchnorm] + activation on h; returns the expression."""
    N, C, H, W = h.shape
    bn = bn_ok and b.r() < 0.3
    cout, g, k, s, p, d = cfg or conv_config(b, C, H, W, wide=wide)
    w = b.param(b.fresh("k"), (cout, C // g) + k, frozen=b.r() < 0.05)
    if b.r() < 0.1:
        # the weight through an expression: a per-output-channel scale
        sc = b.param(b.fresh("ks"), (cout, 1, 1, 1), data=1 + 0.2 * b.rng.standard_normal((cout, 1, 1, 1)))
        w = b.bin("*", w, sc)
    bias = None
    if not bn and bias_ok and b.r() < 0.6:
        bias = b.param(b.fresh("kb"), (cout,), std=0.1)
    c = b.conv2d(h, w, bias, s, p, d, g)
    if bn and c.shape[0] * c.shape[2] * c.shape[3] > 1:
        c = b.tmp(c, "c")
        gamma = b.param(b.fresh("gamma"), (cout,), data=1 + 0.1 * b.rng.standard_normal(cout), init="ones")
        beta = b.param(b.fresh("beta"), (cout,), std=0.1, init="zeros")
        rm = b.state(b.fresh("rm"), (cout,), 0.1 * b.rng.standard_normal(cout))
        rv = b.state(b.fresh("rv"), (cout,), 1 + 0.1 * b.rng.random(cout), init="ones")
        c = b.batchnorm(c, gamma, beta, rm, rv)
    elif bias is None and bias_ok and b.r() < 0.3:
        # a broadcast channel bias [C, 1, 1] instead of conv2d's own
        c = b.bin("+", c, b.param(b.fresh("cb"), (cout, 1, 1), std=0.1))
    return b.activation(c)


def fam_conv(b):
    wide = b.r() < 0.35
    B = b.choice([2, 3, 5, 8, 9, 13, 16] if wide else ODD_BATCHES + [4, 8])
    b.B = B
    b.head.append(f"const B = {B}")
    C = b.choice([3, 5, 8, 16, 32] if wide else [1, 2, 3, 4, 6])
    H = b.choice([7, 9, 11, 13, 15, 17] if wide else [5, 6, 7, 9, 11, 13, 15])
    W = H if b.r() < 0.6 else b.choice([5, 7, 8, 10, 12, 16, 18, 32])  # (16, 32: output rows of whole vectors)
    if b.r() < 0.1:
        # the image comes out of a dense layer (a generator's first step)
        Fin = b.choice([3, 8, 20])
        z = b.input("z", (B, Fin))
        wd = b.param("Wz", (Fin, C * H * W))
        fz, fw = z.fn, wd.fn
        x = b.let("x", b.call("reshape", [b.bin("@", z, wd), f"[B, {C}, {H}, {W}]"], [], (B, C, H, W),
                              lambda env, shp=(B, C, H, W): torch.reshape(fz(env) @ fw(env), shp)))
    else:
        x = b.input("x", (B, C, H, W))
    h = x
    use_fn = b.r() < 0.25
    stages = b.randint(1, 3) if b.r() < 0.7 else b.randint(4, 6)
    for si in range(stages):
        N, C, H, W = h.shape
        if use_fn and si == 0:
            h = fn_conv_block(b, h)
            continue
        kind = b.choice(["plain", "plain", "plain", "inception", "slice", "shadow"])
        if kind == "inception":
            # two branches of different kernels, same output size, concatenated on channels
            k1 = b.choice([1, 3])
            c1 = b.randint(1, 8 if not wide else 16)
            c2 = b.randint(1, 8 if not wide else 16)
            s = b.choice([1, 1, 2])
            a1 = conv_layer(b, h, wide, bn_ok=False, cfg=(c1, 1, (k1, k1), (s, s), (k1 // 2, k1 // 2), (1, 1)))
            a2 = conv_layer(b, h, wide, bn_ok=False, cfg=(c2, 1, (3, 5), (s, s), (1, 2), (1, 1)))
            if a1.shape != a2.shape[:1] + (a1.shape[1],) + a2.shape[2:]:
                raise Reject("branch shapes")
            fa, fb = a1.fn, a2.fn
            shape = (N, c1 + c2) + a1.shape[2:]
            lst = E(f"[{a1.text}, {a2.text}]", ATOM, (), None)
            h = b.let(b.fresh("h"), b.call("concat", [lst, b.choice(["1", "-3"])], [], shape,
                                             lambda env, fa=fa, fb=fb: torch.cat([fa(env), fb(env)], 1)))
        elif kind == "slice" and C > 2:
            # a channel slice with a step feeding the conv
            lo = b.randint(0, C - 2)
            st = b.choice([1, 2])
            sl = slice(lo, None, st)
            n = len(range(C)[sl])
            fh = h.fn
            e = E(f"{h.text}[:, {lo}::{st}]" if st > 1 else f"{h.text}[:, {lo}:]", ATOM, (N, n, H, W),
                  lambda env, fh=fh, sl=sl: fh(env)[:, sl])
            h = b.let(b.fresh("h"), conv_layer(b, e, wide))
        elif kind == "shadow":
            # h = conv(h); h = act(h) rebinds one name
            name = b.fresh("h")
            h = b.let(name, conv_layer(b, h, wide, bn_ok=False))
            b.let(name, b.activation(h, ("relu", "tanh", "sigmoid", "elu")))
            h = b.ref(name)
        else:
            h = b.let(b.fresh("h"), conv_layer(b, h, wide))
        # a residual block on top: h + act(conv(h)) with a shape-preserving conv
        if b.r() < 0.3:
            N, C, H, W = h.shape
            cout, g, k, s, p, d = conv_config(b, C, H, W, same=True)
            w = b.param(b.fresh("k"), (C, C // g) + k)
            r = b.activation(b.conv2d(h, w, None, s, p, d, g), ("relu", "tanh", "none"))
            h = b.let(b.fresh("h"), b.bin("+", h, r) if b.r() < 0.7 else b.bin("+", r, h))
        # pooling
        if b.r() < 0.6:
            N, C, H, W = h.shape
            kind = b.choice(["max", "avg"])
            for _ in range(20):
                k = b.randint(1, min(4, H, W) if min(H, W) > 1 else 1)
                s_given = b.r() < 0.6
                s = b.randint(1, 3) if s_given else k
                p = b.randint(0, k // 2) if b.r() < 0.5 else 0
                if (H + 2 * p - k) // s + 1 >= 1 and (W + 2 * p - k) // s + 1 >= 1:
                    h = b.let(b.fresh("h"), b.pool(kind, h, k, s, p, s_given))
                    break
        if b.r() < 0.15:
            b.outputs.append(h.text)
        if h.shape[2] * h.shape[3] == 1 and si < stages - 1:
            break
    # head
    N, C, H, W = h.shape
    classes = b.choice([2, 3, 5, 10, 10, 4])
    if b.r() < 0.5 and C * H * W <= 3000:
        f = b.flatten(h)
        if b.r() < 0.3:
            fh = h.fn
            f = b.call("reshape", [h, f"[{h.text}.shape[0], -1]"], [], (N, C * H * W),
                       lambda env: torch.flatten(fh(env), 1))
    else:
        f = b.gap(h)
    f = b.tmp(f, "f")
    Wd = b.param("W", (f.shape[1], classes))
    logits = b.bin("@", f, Wd)
    if b.r() < 0.7:
        logits = b.bin("+", logits, b.param("bias", (classes,), std=0.1))
    logits = b.let("logits", logits)
    b.outputs.append("logits")
    if b.r() < 0.2:
        b.metrics.append(("mean_f", b.reduce("mean", b.ref(f.text))))
    return b.classifier_loss(logits, N, classes)


def fn_conv_block(b, h):
    """A `fn` conv block with its own params, called named, unnamed and in a loop."""
    N, C, H, W = h.shape
    act = b.choice(["relu", "tanh", "leaky_relu(", "sigmoid"])
    kh, kw = b.choice([(3, 3), (1, 1), (3, 1), (5, 3), (3, 3)])
    ph, pw = kh // 2, kw // 2
    pad_t = str(ph) if ph == pw else f"[{ph}, {pw}]"
    has_bn = b.r() < 0.3 and N > 1
    lines = ["fn conv_block(x, c_out) {",
             f"  param w : f32[c_out, x.shape[1], {kh}, {kw}] = kaiming_normal"]
    if has_bn:
        lines += ["  param g : f32[c_out] = ones", "  param be : f32[c_out] = zeros",
                  "  state m : f32[c_out] = zeros", "  state v : f32[c_out] = ones",
                  f"  return {act if act != 'leaky_relu(' else 'leaky_relu'}"
                  f"(batchnorm(conv2d(x, w, pad={pad_t}), g, be, m, v))"]
    else:
        lines += ["  param b : f32[c_out] = zeros",
                  f"  return {act if act != 'leaky_relu(' else 'leaky_relu'}(conv2d(x, w, b, pad={pad_t}))"]
    lines.append("}")
    b.decls += lines + [""]
    actf = {"relu": kinked(torch.relu), "tanh": torch.tanh, "sigmoid": torch.sigmoid,
            "leaky_relu(": kinked(lambda t: F.leaky_relu(t, 0.01))}[act]

    def instance(inst, cin, cout):
        w = b.param(f"{inst}.w", (cout, cin, kh, kw), declare=False)
        if has_bn:
            b.param(f"{inst}.g", (cout,), data=1 + 0.1 * b.rng.standard_normal(cout), declare=False)
            b.param(f"{inst}.be", (cout,), std=0.1, declare=False)
            b.state(f"{inst}.m", (cout,), 0.1 * b.rng.standard_normal(cout), declare=False)
            b.state(f"{inst}.v", (cout,), 1 + 0.1 * b.rng.random(cout), declare=False)

            def f(env, xin):
                c = F.conv2d(xin, env[w.text], None, padding=(ph, pw))
                return actf(F.batch_norm(c, env[f"{inst}.m"], env[f"{inst}.v"], env[f"{inst}.g"],
                                         env[f"{inst}.be"], training=env["@train"], momentum=0.1,
                                         eps=1e-5))
        else:
            b.param(f"{inst}.b", (cout,), std=0.1, declare=False)

            def f(env, xin):
                return actf(F.conv2d(xin, env[w.text], env[f"{inst}.b"], padding=(ph, pw)))
        return f

    def unnamed():
        k = b.fn_counts.get("conv_block", 0)
        b.fn_counts["conv_block"] = k + 1
        return f"conv_block{k}"

    c1 = b.choice([2, 3, 4, 6])
    f1 = instance("c1", C, c1)
    b.body.append(f"c1 = conv_block({h.text}, {c1})")
    hx = h.fn
    b.stmts.append(("c1", lambda env: f1(env, hx(env))))
    b.shapes["c1"] = (N, c1, H, W)
    # `h = conv_block(h, n)` in a loop: h is bound, so the calls are unnamed
    n = b.randint(1, 2)
    b.body.append("h = c1")
    b.stmts.append(("h", lambda env: env["c1"]))
    b.body.append(f"for i in 0..{n} {{ h = conv_block(h, {c1}) }}")
    for _ in range(n):
        fi = instance(unnamed(), c1, c1)
        b.stmts.append(("h", lambda env, fi=fi: fi(env, env["h"])))
    b.shapes["h"] = (N, c1, H, W)
    if b.r() < 0.6:
        return b.let(b.fresh("h"), b.bin("+", b.ref("h"), b.ref("c1")))
    return b.ref("h")


def fam_gemm(b):
    big = b.r() < 0.2
    B = b.choice([129, 200, 255, 256, 97] if big else GEMM_BATCHES)
    b.B = B
    b.head.append(f"const B = {B}")
    K = b.choice([513, 640, 1000, 333] if big else [1, 3, 7, 10, 16, 17, 31, 64, 100, 129, 256, 300])
    classes = b.choice([1, 2, 3, 5, 10, 10, 10, 16, 4, 7])
    sub = b.choice(["mlp", "mlp", "mlp", "batched", "attn", "gram", "trans", "trans", "bcast", "shared"])
    if big:
        sub = b.choice(["mlp", "trans"])
    if sub == "shared":
        return gemm_shared(b, B, min(K, 64), classes)
    if sub == "trans":
        return gemm_trans(b, B, K, classes)
    if sub == "bcast":
        return gemm_bcast(b)
    if sub == "mlp":
        x = b.input("x", (B, K))
        h = x
        layers = b.randint(1, 3)
        wset = [97, 150, 255, 300, 17] if big else [1, 5, 8, 10, 13, 16, 24, 33, 64, 100, 128, 256]
        widths = [b.choice(wset) for _ in range(layers - 1)] + [classes]
        use_fn = b.r() < 0.25
        if use_fn:
            b.decls += ["fn dense(x, n) {", "  param W : f32[x.shape[1], n] = xavier_uniform",
                        "  param b : f32[n] = zeros", "  return x @ W + b", "}", ""]
        for li, wdt in enumerate(widths):
            last = li == len(widths) - 1
            if use_fn:
                if h.text != "x" and b.r() < 0.5:
                    # `h = dense(h, n)` rebinds h: an unnamed call, params dense0.W, dense1.W, ...
                    k = b.fn_counts.get("dense", 0)
                    b.fn_counts["dense"] = k + 1
                    name, inst = h.text, f"dense{k}"
                else:
                    name = "logits" if last else b.fresh("fc")
                    inst = name
                b.param(f"{inst}.W", (h.shape[1], wdt), declare=False)
                b.param(f"{inst}.b", (wdt,), std=0.1, declare=False)
                hf = h.fn
                e = E(f"dense({h.text}, {wdt})", ATOM, (B, wdt),
                      lambda env, hf=hf, inst=inst: hf(env) @ env[f"{inst}.W"] + env[f"{inst}.b"])
                h = b.let(name, e)
                if not last:
                    h = b.let(b.fresh("a"), b.activation(h))
                continue
            transposed = b.r() < 0.2
            frozen = b.r() < 0.1
            if transposed:
                w = b.param(b.fresh("Wt"), (wdt, h.shape[1]), frozen=frozen)
                fw = w.fn
                wT = E(f"{w.text}.T", ATOM, (h.shape[1], wdt), lambda env, fw=fw: fw(env).t())
            else:
                wT = b.param(b.fresh("W"), (h.shape[1], wdt), frozen=frozen)
            z = b.bin("@", h, wT)
            if b.r() < 0.7:
                z = b.bin("+", z, b.param(b.fresh("b"), (wdt,), std=0.1))
            if not last:
                if b.r() < 0.1 and B > 1:
                    z = b.tmp(z, "z")
                    gamma = b.param(b.fresh("gamma"), (wdt,), data=1 + 0.1 * b.rng.standard_normal(wdt))
                    beta = b.param(b.fresh("beta"), (wdt,), std=0.1)
                    rm = b.state(b.fresh("rm"), (wdt,), 0.1 * b.rng.standard_normal(wdt))
                    rv = b.state(b.fresh("rv"), (wdt,), 1 + 0.1 * b.rng.random(wdt), init="ones")
                    z = b.batchnorm(z, gamma, beta, rm, rv)
                z = b.activation(z)
                if b.r() < 0.1:
                    pt = b.choice(["0", "0.0"])
                    fz = z.fn
                    z = E(f"dropout({z.text}, {pt})", ATOM, z.shape, lambda env, fz=fz: fz(env))
            h = b.let(b.fresh("h") if not last else "logits", z)
        if h.text != "logits":
            h = b.let("logits", h)
        b.outputs.append("logits")
        return b.classifier_loss(h, B, classes)
    if sub == "batched":
        T = b.choice([1, 2, 3, 5, 7])
        K = min(K, 64)
        x = b.input("x", (B, T, K))
        w = b.param("W", (K, classes if b.r() < 0.5 else b.choice([3, 8, 16, 20])))
        z = b.bin("@", x, w)
        if b.r() < 0.5:
            z = b.bin("+", z, b.param("c", (z.shape[-1],), std=0.1))
        z = b.let("z", b.activation(z, ("tanh", "relu", "sigmoid", "none")))
        n = z.shape[-1]
        if b.r() < 0.5:
            m = b.reduce(b.choice(["mean", "sum", "max"]), z, axes=[1])
        else:
            m = b.call("flatten", [z], [], (B, T * n), lambda env, f=z.fn: torch.flatten(f(env), 1))
        m = b.let("m", m)
        w2 = b.param("W2", (m.shape[1], classes))
        logits = b.let("logits", b.bin("@", m, w2))
        b.outputs.append("logits")
        return b.classifier_loss(logits, B, classes)
    if sub == "attn":
        B = min(B, 8)
        b.B = B
        b.head[-1] = f"const B = {B}"
        T = b.choice([2, 3, 5, 7, 9])
        D = b.choice([4, 6, 8, 12, 16])
        x = b.input("x", (B, T, D))
        wq = b.param("Wq", (D, D))
        wk = b.param("Wk", (D, D))
        wv = b.param("Wv", (D, D))
        q = b.let("q", b.bin("@", x, wq))
        k = b.let("k", b.bin("@", x, wk))
        v = b.let("v", b.bin("@", x, wv))
        fk = k.fn
        kt = b.call("transpose", [k, "[0, 2, 1]"], [], (B, D, T), lambda env: fk(env).permute(0, 2, 1))
        sc = b.bin("@", q, kt)
        st, sv = b.num(1 / np.sqrt(D), 4)
        sc = b.bin("*", sc, E(st, ATOM, (), lambda env, sv=sv: sv))
        fs = sc.fn
        ax = b.choice(["-1", "2"])
        a = b.let("att", b.call("softmax", [sc], [("axis", ax)], (B, T, T), lambda env: torch.softmax(fs(env), -1)))
        o = b.let("o", b.bin("@", a, v))
        wo = b.param("Wo", (D, classes))
        pooled = b.reduce("mean", o, axes=[1])
        logits = b.let("logits", b.bin("@", pooled, wo))
        b.outputs += ["logits", "att"]
        return b.classifier_loss(logits, B, classes)
    # gram: x^T x and x x^T shapes (M, N small, K = batch)
    B = min(B, 64)
    b.B = B
    b.head[-1] = f"const B = {B}"
    Kx = min(K, 33)
    x = b.input("x", (B, Kx))
    w = b.param("W", (Kx, classes))
    h = b.let("h", b.unary("tanh", b.bin("@", x, w)))
    hf = h.fn
    g = b.let("g", b.bin("@", E("h.T", ATOM, (classes, B), lambda env: hf(env).t()), h))
    s = b.let("s", b.bin("@", h, g))
    b.outputs.append("s")
    t = b.label_f("t", s.shape, b.rng.standard_normal(s.shape))
    return b.loss_of(b.choice(["mse", "l1", "huber"]), s, t)


def gemm_trans(b, B, K, classes):
    """Products of transposed operands: (x or x.T) @ (W or W.T), then a skinny layer."""
    xt = b.r() < 0.5
    x = b.input("x", (K, B) if xt else (B, K))
    fx = x.fn
    if xt:
        a = E("x.T", ATOM, (B, K), lambda env: fx(env).t()) if b.r() < 0.6 else \
            b.call("transpose", [x, "[1, 0]"], [], (B, K), lambda env: fx(env).t())
    else:
        a = x
    hid = b.choice([1, 3, 6, 8, 10, 12, 16, 17, 24, 32, 48, 64, 96] + ([130, 257] if B > 96 else []))
    wt = b.r() < 0.5
    w = b.param("W1", (hid, K) if wt else (K, hid))
    fw = w.fn
    wm = E("W1.T", ATOM, (K, hid), lambda env: fw(env).t()) if wt else w
    z = b.bin("@", a, wm)
    if b.r() < 0.5:
        z = b.bin("+", z, b.param("b1", (hid,), std=0.1))
    h = b.let("h", b.activation(z, ("relu", "tanh", "sigmoid", "leaky_relu", "none")))
    w2t = b.r() < 0.5
    w2 = b.param("W2", (classes, hid) if w2t else (hid, classes))
    f2 = w2.fn
    wm2 = E("W2.T", ATOM, (hid, classes), lambda env: f2(env).t()) if w2t else w2
    logits = b.let("logits", b.bin("@", h, wm2))
    b.outputs.append("logits")
    if b.r() < 0.3:
        b.outputs.append("h")
    return b.classifier_loss(logits, B, classes)


def gemm_shared(b, B, K, classes):
    """One weight used twice (its gradients add up) and a square layer applied repeatedly."""
    x = b.input("x", (B, K))
    D = b.choice([3, 8, 10, 16, 19])
    w = b.param("Win", (K, D))
    h = b.let("h", b.activation(b.bin("@", x, w), ("tanh", "sigmoid", "elu")))
    u = b.param("U", (D, D), std=0.5 / np.sqrt(D))
    n = b.randint(1, 3)
    if b.r() < 0.5:
        b.body.append(f"for i in 0..{n} {{ h = tanh(h @ U) + h }}")
        for _ in range(n):
            b.stmts.append(("h", lambda env: torch.tanh(env["h"] @ env["U"]) + env["h"]))
    else:
        for _ in range(n):
            b.let("h", b.bin("+", b.unary("tanh", b.bin("@", b.ref("h"), u)), b.ref("h")))
    h = b.ref("h")
    wo = b.param("Wout", (D, classes))
    logits = b.let("logits", b.bin("@", h, wo))
    b.outputs.append("logits")
    return b.classifier_loss(logits, B, classes)


def gemm_bcast(b):
    """torch.matmul broadcasting: [M,K] @ [B,K,N], [B,M,K] @ [1,K,N], [B,M,K] @ [B,K,N]."""
    B = b.choice([1, 2, 3, 5])
    b.B = B
    b.head[-1] = f"const B = {B}"
    M, K, N = b.choice([1, 3, 5, 7, 9]), b.choice([2, 4, 7, 16, 19]), b.choice([1, 3, 6, 10, 17])
    form = b.choice(["left2", "right1", "both"])
    if form == "left2":
        x = b.input("x", (B, K, N))
        w = b.param("P", (M, K))
        z = b.bin("@", w, x)
    elif form == "right1":
        x = b.input("x", (B, M, K))
        w = b.param("P", (1, K, N))
        z = b.bin("@", x, w)
    else:
        x = b.input("x", (B, M, K))
        w = b.param("P", (B, K, N))
        q = b.param("Q", (N, N))
        z = b.bin("@", b.bin("@", x, w), q)
    z = b.let("z", b.activation(z, ("tanh", "sigmoid", "none")))
    b.outputs.append("z")
    t = b.label_f("t", z.shape, b.rng.standard_normal(z.shape))
    return b.loss_of(b.choice(["mse", "l1", "huber"]), z, t)


def fam_loss(b):
    B = b.choice([1, 2, 3, 4, 5, 8, 13, 16, 32])
    b.B = B
    b.head.append(f"const B = {B}")
    K = b.choice([2, 3, 6, 10])
    C = b.choice([1, 2, 3, 5, 10])
    x = b.input("x", (B, K))
    w = b.param("W", (K, C), std=1.0)
    z = b.bin("@", x, w)
    if b.r() < 0.6:
        z = b.bin("+", z, b.param("c", (C,), std=0.5))
    z = b.let("z", z)
    b.outputs.append("z")
    kinds = ["mse", "l1", "huber", "cross_entropy", "bce_with_logits", "multi_margin"]
    n = b.randint(1, 3)
    total = None
    used = set()
    for _ in range(n):
        kind = b.choice([k for k in kinds if k not in used])
        used.add(kind)
        if C == 1 and kind in ("cross_entropy", "multi_margin"):
            kind = "bce_with_logits" if "bce_with_logits" not in used else "mse"
            used.add(kind)
        p = z
        if kind in ("mse", "l1", "huber", "bce_with_logits") and b.r() < 0.25:
            # a [B] prediction: one column of z
            j = b.randint(0, C - 1)
            fz = z.fn
            p = E(f"z[:, {j}]", ATOM, (B,), lambda env, fz=fz, j=j: fz(env)[:, j])
            if kind == "bce_with_logits":
                t = b.label_f(b.fresh("t"), (B,), b.rng.uniform(0, 1, (B,)))
            else:
                t = b.label_f(b.fresh("t"), (B,), b.rng.standard_normal((B,)))
            term = b.loss_of(kind, p, t)
            total = term if total is None else b.bin("+", total, term)
            continue
        if b.r() < 0.3 and kind in ("mse", "l1", "huber"):
            p = b.activation(z, ("tanh", "sigmoid", "elu", "leaky_relu"))
        kw = {}
        if kind in ("cross_entropy", "multi_margin"):
            t = b.label_i(b.fresh("y"), B, C)
            if kind == "multi_margin" and b.r() < 0.6:
                tt, v = b.num(b.rng.uniform(0.2, 2.0), 2)
                kw = dict(margin=v, margin_text=tt)
        elif kind == "bce_with_logits":
            t = b.label_f(b.fresh("t"), (B, C), b.rng.uniform(0, 1, (B, C)))
        else:
            t = b.label_f(b.fresh("t"), (B, C), b.rng.standard_normal((B, C)))
            if kind == "huber" and b.r() < 0.7:
                tt, v = b.num(b.rng.uniform(0.2, 2.0), 2)
                kw = dict(delta=v, delta_text=tt)
        term = b.loss_of(kind, p, t, **kw)
        if b.r() < 0.4:
            tt, v = b.num(b.rng.uniform(0.1, 3.0), 2)
            term = b.bin("*", E(tt, ATOM, (), lambda env, v=v: v), term)
        total = term if total is None else b.bin("+", total, term)
    return total


# -- random expressions


def fam_expr(b):
    # Only SGD here: random expressions cancel exactly (mean(p) + mean(q - p)
    # with q independent of p gives p a gradient of exactly 0 in PyTorch,
    # rounding noise of 1e-8 in any other summation order), and Adam's first
    # step turns any such noise into a full step of lr.
    b.sgd_only = True
    B = b.choice([1, 2, 3, 4, 5, 7])
    b.B = B
    b.head.append(f"const B = {B}")
    C = b.choice([2, 3, 4, 5, 6, 8])
    D = b.choice([2, 3, 4, 5, 7])
    x = b.input("x", (B, C, D))
    pool = [x]
    # params in broadcastable shapes
    shapes = [(C, D), (D,), (C, 1), (1, D), (B, C, D), (C, D), (1, C, 1), (), (1,)]
    for i in b.rng.permutation(len(shapes))[:b.randint(2, 4)]:
        shp = shapes[i]
        pool.append(b.param(b.fresh("p"), shp, std=0.7, frozen=b.r() < 0.1))
    if b.r() < 0.2:  # a state no op updates: a constant of the step
        shp = shapes[b.randint(0, len(shapes) - 1)]
        pool.append(b.state(b.fresh("s"), shp, b.rng.standard_normal(shp), init="ones"))
    steps = b.randint(3, 12)
    for _ in range(steps):
        e = rand_expr(b, pool, depth=b.randint(1, 3))
        if e is None:
            continue
        v = b.tmp(e, "v")
        pool.append(v)
    # combine everything reaching the params into one [B, ...] result
    big = [e for e in pool[1:] if e.shape and e.shape[0] == B and len(e.shape) >= 2 and e.text not in b.leaves]
    if not big:
        big = [b.tmp(b.bin("*", x, pool[1]), "v")]
    r = big[-1]
    for e in pool[1:]:
        if e is r:
            continue
        # reduce e to a scalar and add it in (keeps every param on the path)
        s = e if e.shape == () else b.reduce(b.choice(["sum", "mean"]), e)
        r = b.bin("+", r, s)
    r = b.let("r", r)
    b.outputs.append("r")
    flat = (B, int(np.prod(r.shape[1:])))
    if len(r.shape) > 2:
        rf = r.fn
        first = b.choice(["B", str(B), "-1"])
        second = str(flat[1]) if first == "-1" or b.r() < 0.5 else "-1"
        r = b.let("rf", b.call("reshape", [r, f"[{first}, {second}]"],
                               [], flat, lambda env: torch.reshape(rf(env), flat)))
    t = b.label_f("t", r.shape, b.rng.standard_normal(r.shape))
    kind = b.choice(["mse", "l1", "huber"])
    return b.loss_of(kind, r, t)


def rand_expr(b, pool, depth):
    """A random float expression over values in pool; None if it drew nothing usable."""
    if depth == 0 or b.r() < 0.15:
        return b.choice(pool)
    k = b.choice(["unary", "unary", "binary", "binary", "binary", "reduce", "softmax", "shape", "pow", "minmax",
                  "const", "matmul", "matmul"])
    if k == "matmul":
        # products of inlined expressions: with a fresh param, or of a value with its own transpose
        a = rand_expr(b, pool, depth - 1)
        if len(a.shape) < 2:
            return a
        fa = a.fn
        rank = len(a.shape)
        if b.r() < 0.6:
            n = b.choice([1, 2, 3, a.shape[-1], 7])
            w = b.param(b.fresh("m"), (a.shape[-1], n), std=0.7 / np.sqrt(a.shape[-1]))
            if b.r() < 0.3:  # the weight through an expression
                fw = w.fn
                w = E(f"({w.text} * 0.5)", ATOM, w.shape, lambda env, fw=fw: fw(env) * 0.5)
            return b.bin("@", a, w)
        perm = list(range(rank - 2)) + [rank - 1, rank - 2]
        at = b.call("transpose", [a, "[" + ", ".join(map(str, perm)) + "]"], [], a.shape[:-2] + a.shape[-2:][::-1],
                    lambda env: fa(env).transpose(-1, -2))
        return b.bin("@", at, a) if b.r() < 0.5 else b.bin("@", a, at)
    if k == "unary":
        a = rand_expr(b, pool, depth - 1)
        fn = b.choice(["relu", "sigmoid", "tanh", "abs", "neg", "elu", "leaky_relu", "exp", "log", "sqrt", "-"])
        if fn == "exp":
            return b.unary("exp", b.unary("tanh", a))
        if fn == "log":
            one = b.lit(b.choice([1.0, 0.5, 2.0]))
            return b.unary("log", b.bin("+", b.bin("*", a, a), one))
        if fn == "sqrt":
            return b.unary("sqrt", b.bin("+", b.unary("abs", a), b.lit(b.choice([1.0, 0.25]))))
        if fn == "-":
            return b.neg(a)
        if fn in ("elu", "leaky_relu"):
            return b.activation(a, (fn,))
        return b.unary(fn, a)
    if k == "pow":
        a = rand_expr(b, pool, depth - 1)
        p = b.choice(["2", "3", "1.5", "0.5", "2.0"])
        if p in ("1.5", "0.5"):
            a = b.bin("+", b.unary("abs", a), b.lit(0.5))
        return b.pow(a, p)
    if k == "binary":
        a = rand_expr(b, pool, depth - 1)
        c = rand_expr(b, pool, depth - 1)
        try:
            bshape(a.shape, c.shape)
        except ValueError:
            return a
        op = b.choice(["+", "-", "*", "/"])
        if op == "/":
            c = b.bin("+", b.unary("sigmoid", c), b.lit(0.5))
        if b.r() < 0.2:
            a, c = b.lit(b.rng.uniform(0.1, 3)), c
        return b.bin(op, a, c)
    if k == "minmax":
        a = rand_expr(b, pool, depth - 1)
        c = rand_expr(b, pool, depth - 1)
        try:
            shape = bshape(a.shape, c.shape)
        except ValueError:
            return a
        fa, fc = a.fn, c.fn
        if b.r() < 0.5:
            return b.call("maximum", [a, c], [], shape, lambda env: torch.maximum(torch.as_tensor(fa(env)),
                                                                                 torch.as_tensor(fc(env))))
        return b.call("minimum", [a, c], [], shape, lambda env: torch.minimum(torch.as_tensor(fa(env)),
                                                                             torch.as_tensor(fc(env))))
    if k == "const":
        a = rand_expr(b, pool, depth - 1)
        op = b.choice(["+", "-", "*", "/"])
        lit = b.lit(b.rng.uniform(0.1, 3))
        return b.bin(op, a, lit) if b.r() < 0.6 else b.bin(op if op != "/" else "*", lit, a)
    if k == "reduce":
        a = rand_expr(b, pool, depth - 1)
        if len(a.shape) == 0:
            return a
        rank = len(a.shape)
        kind = b.choice(["sum", "mean", "max"])
        if b.r() < 0.15:
            return b.reduce(kind, a)
        axes = sorted(b.rng.choice(rank, size=b.randint(1, rank), replace=False).tolist())
        keep = b.r() < 0.5
        red = b.reduce(kind, a, axes=axes, keepdim=keep)
        if keep:
            # broadcast back: a - red (centering) or a * red
            return b.bin(b.choice(["-", "*", "+"]), a, red)
        return red
    if k == "softmax":
        a = rand_expr(b, pool, depth - 1)
        if len(a.shape) == 0:
            return a
        rank = len(a.shape)
        ax = b.randint(0, rank - 1)
        fa = a.fn
        which = b.choice(["softmax", "log_softmax"])
        ax_text = [] if ax == rank - 1 and b.r() < 0.4 else [("axis", str(ax - rank if b.r() < 0.3 else ax))]
        f = torch.softmax if which == "softmax" else torch.log_softmax
        return b.call(which, [a], ax_text, a.shape, lambda env: f(fa(env), ax))
    if k == "shape":
        a = rand_expr(b, pool, depth - 1)
        if len(a.shape) < 2:
            return a
        rank = len(a.shape)
        fa = a.fn
        op = b.choice(["transpose", "slice", "concat", "reshape", "T", "index"])
        if op == "transpose":
            perm = b.rng.permutation(rank).tolist()
            shape = tuple(a.shape[i] for i in perm)
            return b.call("transpose", [a, "[" + ", ".join(map(str, perm)) + "]"], [], shape,
                          lambda env: fa(env).permute(*perm))
        if op == "T" and rank == 2:
            return E(f"({a.text}).T" if a.prec < ATOM else f"{a.text}.T", ATOM, a.shape[::-1],
                     lambda env: fa(env).t())
        if op == "slice":
            ax = b.randint(0, rank - 1)
            n = a.shape[ax]
            start = b.randint(-n, n - 1) if b.r() < 0.7 else None
            stop = b.randint(-n, n) if b.r() < 0.5 else None
            step = b.randint(1, 3) if b.r() < 0.5 else None
            idx = [slice(None)] * rank
            idx[ax] = slice(start, stop, step)
            got = np.zeros(a.shape)[tuple(idx)].shape
            if 0 in got:
                return a
            parts = []
            for i in range(rank):
                if i != ax:
                    parts.append(":")
                else:
                    s = ("" if start is None else str(start)) + ":" + ("" if stop is None else str(stop))
                    if step is not None:
                        s += f":{step}"
                    parts.append(s)
            while parts and parts[-1] == ":" and b.r() < 0.5:
                parts.pop()
            if not parts:
                return a
            tx = f"({a.text})" if a.prec < ATOM else a.text
            # numpy semantics in torch: normalise negative bounds, positive steps
            sl = idx[ax].indices(n)
            return E(f"{tx}[{', '.join(parts)}]", ATOM, got,
                     lambda env: fa(env).narrow(ax, 0, n)[(slice(None),) * ax + (slice(*sl),)])
        if op == "index":
            ax = b.randint(1, rank - 1)
            n = a.shape[ax]
            i = b.randint(-n, n - 1)
            parts = [":"] * ax + [str(i)]
            tx = f"({a.text})" if a.prec < ATOM else a.text
            shape = a.shape[:ax] + a.shape[ax + 1:]
            return E(f"{tx}[{', '.join(parts)}]", ATOM, shape, lambda env: fa(env).select(ax, i))
        if op == "concat":
            c = rand_expr(b, pool, depth - 1)
            if len(c.shape) != rank:
                return a
            diff = [i for i in range(rank) if a.shape[i] != c.shape[i]]
            if len(diff) > 1:
                return a
            ax = diff[0] if diff else b.randint(0, rank - 1)
            shape = list(a.shape)
            shape[ax] += c.shape[ax]
            fc = c.fn
            ax_t = str(ax - rank if b.r() < 0.3 else ax)
            return b.call("concat", [E(f"[{a.text}, {c.text}]", ATOM, (), None), ax_t], [], tuple(shape),
                          lambda env: torch.cat([fa(env), fc(env)], ax))
        if op == "reshape":
            total = int(np.prod(a.shape))
            divs = [d for d in range(1, total + 1) if total % d == 0]
            d0 = b.choice(divs)
            shape = (d0, total // d0)
            if b.r() < 0.3 and (total // d0) % 2 == 0:
                shape = (d0, 2, total // d0 // 2)
            txt = [str(s) for s in shape]
            if b.r() < 0.4:
                txt[b.randint(0, len(txt) - 1)] = "-1"
            return b.call("reshape", [a, "[" + ", ".join(txt) + "]"], [], shape,
                          lambda env: torch.reshape(fa(env), shape))
        return a
    return b.choice(pool)


# ---------------------------------------------------------------------------
# regression cases: fixed models for failures found by this check, written
# into the test suite's tests/conformance/NAME by --regression NAME


def reg_adam_wd_cycle(b):
    """Adam with weight decay on two params: each param's update and its
    moments' updates read one another's old values, a cycle that lowering
    breaks through temporaries (it once looped, allocating without end)."""
    b.head.append("# Adam with weight decay on two params: the updates of W, W@m, W@v (and c, c@m,")
    b.head.append("# c@v) read each other's old values, a cycle the lowering breaks with temporaries")
    b.head.append("const B = 5")
    b.B = 5
    x = b.input("x", (5, 3))
    w = b.param("W", (3, 2), init="xavier_uniform")
    c = b.param("c", (2,), std=0.1, init="zeros")
    z = b.let("z", b.bin("+", b.bin("@", x, w), c))
    b.outputs.append("z")
    t = b.label_f("t", (5, 2), b.rng.standard_normal((5, 2)))
    b.fixed_opt = ("adam(lr=0.01, weight_decay=0.1)",
                   ("adam", dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)))
    return b.loss_of("mse", z, t)


def reg_output_loss(b):
    """`output loss`: the loss is also an output (and a metric reads it); the
    --out file of `dlrun step` holds it once (it once failed on the
    duplicate name)."""
    b.head.append("# the loss is also an output and a metric reads it: dlrun step --out holds it once")
    b.head.append("const B = 3")
    b.B = 3
    x = b.input("x", (3, 4))
    w = b.param("W", (4, 2), init="xavier_uniform")
    z = b.let("z", b.bin("@", x, w))
    t = b.label_f("t", (3, 2), b.rng.standard_normal((3, 2)))
    b.outputs += ["z", "loss"]
    b.metrics.append(("l2", b.bin("*", E("loss", ATOM, (), lambda env: env["loss"]),
                                  E("2", ATOM, (), lambda env: 2.0))))
    b.fixed_opt = ("sgd(lr=0.1)", ("sgd", dict(lr=0.1, momentum=0.0, weight_decay=0.0, nesterov=False)))
    return b.loss_of("mse", z, t)


REGRESSIONS = {"adam_wd_cycle": reg_adam_wd_cycle, "output_loss": reg_output_loss}


def make_regression(name):
    b = Builder(np.random.default_rng(list(name.encode())), name)
    loss = REGRESSIONS[name](b)
    b.finish(loss)
    r32, r64 = b.run(torch.float32), b.run(torch.float64)
    i32, i64 = b.infer(torch.float32), b.infer(torch.float64)
    why = stable(r32 + (i32,), r64 + (i64,))
    if why:
        raise RuntimeError(f"regression {name}: unstable reference ({why})")
    out, grads, params, inf = (to_np(d) for d in r32 + (i32,))
    return b, out, grads, params, inf


FAMILIES = {"conv": (fam_conv, 0.4), "gemm": (fam_gemm, 0.3), "expr": (fam_expr, 0.18), "loss": (fam_loss, 0.12)}


def make_case(seed, idx, family=None):
    rng = np.random.default_rng([seed, idx])
    fams = list(FAMILIES)
    for attempt in range(40):
        fam = family or fams[rng.choice(len(fams), p=[FAMILIES[f][1] for f in fams])]
        b = Builder(rng, f"r{seed}_{idx}")
        b.head.append(f"# refcheck seed {seed} case {idx}: {fam}")
        if rng.random() < 0.3:
            b.head.append(f"model r{seed}_{idx}_{fam}")
        try:
            loss = FAMILIES[fam][0](b)
            b.finish(loss)
            _kink_min[0] = float("inf")
            r32 = b.run(torch.float32)
            r64 = b.run(torch.float64)
        except Reject:
            continue
        except Exception:
            b.finish_text = "\n".join(b.head + b.decls + b.body)
            print(f"gen_cases: seed {seed} case {idx}: the generator failed on\n{b.finish_text}", file=sys.stderr)
            raise
        i32, i64 = b.infer(torch.float32), b.infer(torch.float64)
        why = stable(r32 + (i32,), r64 + (i64,))
        if why or not adam_safe(b, r32, r64) or not kink_safe():
            continue
        out, grads, params, inf = (to_np(d) for d in r32 + (i32,))
        return fam, b, out, grads, params, inf
    raise RuntimeError(f"seed {seed} case {idx}: no stable case in 40 draws")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--out", required=True)
    ap.add_argument("--family", choices=list(FAMILIES))
    ap.add_argument("--first", type=int, default=0, help="index of the first case")
    ap.add_argument("--no-optstate", action="store_true", help="leave optimizer state out of expected_params")
    ap.add_argument("--regression", choices=list(REGRESSIONS),
                    help="write the fixed regression case NAME into OUT/NAME instead")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    jobs = [None] if args.regression else range(args.first, args.first + args.count)
    for idx in jobs:
        if args.regression:
            b, out, grads, params, inf = make_regression(args.regression)
            d = os.path.join(args.out, args.regression)
        else:
            fam, b, out, grads, params, inf = make_case(args.seed, idx, args.family)
            d = os.path.join(args.out, f"r{args.seed}_{idx:03d}_{fam}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "model.dl"), "w") as f:
            f.write(b.text)
        p0, feed = b.files()
        if args.no_optstate:
            params = {k: v for k, v in params.items() if "@" not in k}
        save_st(os.path.join(d, "params.safetensors"), p0)
        save_st(os.path.join(d, "feed.safetensors"), feed)
        save_st(os.path.join(d, "expected_out.safetensors"), out)
        save_st(os.path.join(d, "expected_grads.safetensors"), grads)
        save_st(os.path.join(d, "expected_params.safetensors"), params)
        if not args.regression:  # the regression cases stay in the conformance format
            save_st(os.path.join(d, "expected_infer.safetensors"), inf)
        print(d)


if __name__ == "__main__":
    main()
