"""tfmpe: amortised Bayesian inference for hierarchical simulators by tokenised flow matching.

Describe a model with shared globals and exchangeable sites, give a vectorised simulator, and
``fit`` trains a posterior from single-site simulations (likelihood factorisation) that
``sample`` answers for any observation. The engine is the Rust crate ``tfmpe``; arrays in and
out are numpy.

    import numpy as np, tfmpe

    def simulate(g, l, inputs, rng):            # one row per site simulation
        return l["mu"] + g["sigma"] * rng.standard_normal(len(l["mu"]))

    model = tfmpe.Model(globals={"sigma": tfmpe.HalfNormal(1.0)},
                        locals={"mu": tfmpe.Normal(0.0, 1.0)},
                        observations={"y": 1}, simulate=simulate)
    posterior = tfmpe.fit(model, sites=10, budget=2000)
    draws = posterior.sample(observation, 1000)  # (1000, 1 + 10)
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from . import _tfmpe
from ._tfmpe import SimulatorError

__all__ = [
    "Normal", "HalfNormal", "LogNormal", "Uniform", "TruncatedNormal", "Exponential", "Gamma",
    "Beta", "Model", "Posterior", "fit", "load", "tasks", "c2st", "SimulatorError",
]

ParamValue = Union[float, str, Callable[[Dict[str, np.ndarray]], np.ndarray]]


# ---------------------------------------------------------------- priors


@dataclass
class _Prior:
    """A prior family: its parameters are numbers; a local's may also name a scalar global
    (``Normal("mu", "tau")``) or be a function of the globals' arrays, vectorised over draws
    (``Normal(lambda g: 2 * g["mu"], 1.0)``). ``size`` > 1 makes a vector of iid scalars."""

    family: str = field(init=False)
    size: int = 1

    def _params(self) -> Dict[str, Any]:
        raise NotImplementedError


def _prior(family: str, keys: Sequence[str]):
    def init(self, *args, size: int = 1, **kwargs):
        values = dict(zip(keys, args))
        for k, v in kwargs.items():
            if k not in keys:
                raise TypeError(f"{family} takes {', '.join(keys)} (and size), not {k!r}")
            values[k] = v
        missing = [k for k in keys if k not in values and k not in ("lo", "hi")]
        if missing:
            raise TypeError(f"{family} needs {', '.join(missing)}")
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"{family}: size must be a whole number ≥ 1, got {size!r}")
        self.values, self.size, self.family = values, int(size), family

    def repr_(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        return f"{family}({args}{'' if self.size == 1 else f', size={self.size}'})"

    return type(family, (_Prior,), {"__init__": init, "__repr__": repr_, "__doc__": (
        f"The {family} prior with parameters {', '.join(keys)}; "
        "see tfmpe._Prior for what a parameter may be.")})


Normal = _prior("Normal", ("loc", "scale"))
HalfNormal = _prior("HalfNormal", ("scale",))
LogNormal = _prior("LogNormal", ("loc", "scale"))
Uniform = _prior("Uniform", ("lo", "hi"))
TruncatedNormal = _prior("TruncatedNormal", ("loc", "scale", "lo", "hi"))
Exponential = _prior("Exponential", ("rate",))
Gamma = _prior("Gamma", ("shape", "rate"))
Beta = _prior("Beta", ("alpha", "beta"))


# ---------------------------------------------------------------- models


def _columns(flat: np.ndarray, rows: int, variables: Sequence[tuple]) -> Dict[str, np.ndarray]:
    """Named views of a flat row-major block: (rows,) for a scalar, (rows, size) for a vector."""
    block = np.asarray(flat, dtype=np.float64).reshape(rows, -1)
    out, at = {}, 0
    for name, size in variables:
        out[name] = block[:, at] if size == 1 else block[:, at:at + size]
        at += size
    return out


class Model:
    """A hierarchical model: ``globals`` and ``locals`` map names to priors, ``observations``
    maps names to sizes (or is the size of one variable ``y``), and ``simulate(globals, locals,
    inputs, rng)`` returns one row of observations per row of its inputs.

    ``simulate`` is called with batches of site simulations: ``globals`` and ``locals`` are
    dicts of arrays with one row per site (shape ``(n,)`` for a scalar, ``(n, size)`` for a
    vector), ``inputs`` the functional inputs (``(n, obs_dim, input_dim)``) or None, and
    ``rng`` a seeded ``numpy.random.Generator``. It returns ``(n,)`` or ``(n, obs_dim)``
    values; rows with NaN or inf are dropped and counted. ``inputs`` (optional) is a dict
    mapping input names to one site's values, ``obs_dim`` each, the same at every site.
    ``positive`` lists observations that are positive (the networks see their logarithm).
    """

    def __init__(self, globals: Mapping[str, _Prior], locals: Mapping[str, _Prior],
                 observations: Union[int, Mapping[str, int]], simulate: Callable,
                 name: str = "model", inputs: Optional[Mapping[str, Sequence[float]]] = None,
                 positive: Sequence[str] = (), batch: int = 100_000):
        if isinstance(observations, (int, np.integer)):
            observations = {"y": int(observations)}
        for kind, group in (("globals", globals), ("locals", locals)):
            for n, p in group.items():
                if not isinstance(p, _Prior):
                    raise TypeError(f"{kind}[{n!r}] must be a prior such as tfmpe.Normal(0, 1), got {p!r}")
        self.simulate = simulate
        self._globals = [(n, p.size) for n, p in globals.items()]
        self._locals = [(n, p.size) for n, p in locals.items()]
        self._obs = [(n, int(s)) for n, s in observations.items()]
        self.obs_dim = sum(s for _, s in self._obs)
        self.last_error: Optional[BaseException] = None
        input_names = list(inputs) if inputs else None
        input_values = None
        if inputs:
            table = np.column_stack([np.asarray(inputs[k], dtype=np.float64) for k in input_names])
            if table.shape[0] != self.obs_dim:
                raise ValueError(f"each input needs {self.obs_dim} values (one per observation value), got {table.shape[0]}")
            input_values = table.ravel().tolist()
        self._input_dim = len(input_names) if input_names else 0

        spec = lambda group: [(n, p.size, p.family, [(k, self._param(k, v)) for k, v in p.values.items()])
                              for n, p in group.items()]
        obs = [(n, s, n in positive) for n, s in self._obs]
        self._model = _tfmpe._Model.custom(name, spec(globals), spec(locals), obs, self._simulate,
                                           int(batch), input_names, input_values)

    def _param(self, key, value):
        if callable(value):
            globals_ = self._globals

            def evaluate(rows, flat):
                try:
                    out = np.asarray(value(_columns(flat, rows, globals_)), dtype=np.float64)
                    out = np.broadcast_to(out, (rows,)) if out.ndim == 0 else out.reshape(-1)
                    if out.shape != (rows,):
                        raise ValueError(f"the function for {key} returned shape {out.shape} for {rows} rows of globals; return one value per row")
                    return np.ascontiguousarray(out)
                except BaseException as e:
                    self.last_error = e
                    raise
            return evaluate
        if isinstance(value, str):
            return value
        return float(value)

    def _simulate(self, rows, seed, g, l, x):
        """The engine's call: flat arrays in, a flat float64 array of rows × obs_dim out."""
        try:
            rng = np.random.default_rng(seed)
            inputs = None if x is None else np.asarray(x).reshape(rows, self.obs_dim, self._input_dim)
            y = self.simulate(_columns(g, rows, self._globals), _columns(l, rows, self._locals), inputs, rng)
            y = np.asarray(y, dtype=np.float64)
            if y.shape not in ((rows, self.obs_dim),) + (((rows,),) if self.obs_dim == 1 else ()):
                want = f"({rows}, {self.obs_dim})" + (f" or ({rows},)" if self.obs_dim == 1 else "")
                raise ValueError(f"simulate returned an array of shape {y.shape} for {rows} site simulations; it must have shape {want}")
            return np.ascontiguousarray(y.reshape(-1))
        except BaseException as e:
            self.last_error = e
            raise

    @property
    def name(self) -> str:
        return self._model.name

    def parameter_names(self, sites: int):
        return self._model.parameter_names(sites)

    def simulate_datasets(self, sites: int, n: int, seed: int = 0):
        """``n`` data sets from the prior: (parameters ``(n, param_dim)``, observations
        ``(n, sites, obs_dim)``)."""
        return _simulate_datasets(self, sites, n, seed)


class Task(Model):
    """A built-in task (``tfmpe.tasks.get(name)``), with its exact posterior where it has one."""

    def __init__(self, name: str):
        self._model = _tfmpe._Model.task(name)
        self.obs_dim = self._model.obs_dim
        self._input_dim = self._model.input_dim
        self.last_error = None

    def exact_posterior(self, observation, n: int, seed: int = 0) -> Optional[np.ndarray]:
        """``n`` draws from the exact posterior ``(n, param_dim)``, or None where there is none."""
        values, sites = _observation(self, observation)
        draws = self._model.exact_posterior(values, sites, n, seed)
        return None if draws is None else np.asarray(draws).reshape(n, -1)


def _simulate_datasets(model, sites, n, seed):
    params, obs, _ = _call(model, lambda: model._model.simulate(sites, n, seed))
    return np.asarray(params).reshape(n, -1), np.asarray(obs).reshape(n, sites, model.obs_dim)


class tasks:
    """The built-in tasks."""

    @staticmethod
    def names():
        return _tfmpe.task_names()

    @staticmethod
    def get(name: str) -> Task:
        return Task(name)


# ---------------------------------------------------------------- running


def _call(model, f):
    """Runs an engine call; an error raised in the user's code is re-raised from it."""
    model.last_error = None
    try:
        return f()
    except (SimulatorError, ValueError, RuntimeError) as e:
        cause, model.last_error = model.last_error, None
        if cause is not None:
            raise SimulatorError(f"{type(cause).__name__}: {cause}") from cause
        raise


def _observation(model, observation):
    """A data set as (flat values, sites): ``(sites,)`` for one value per site, or
    ``(sites, obs_dim)``."""
    obs = np.asarray(observation, dtype=np.float64)
    if obs.ndim == 1 and model.obs_dim == 1:
        obs = obs[:, None]
    if obs.ndim != 2 or obs.shape[1] != model.obs_dim:
        raise ValueError(f"an observation has shape (sites, {model.obs_dim})"
                         + (" or (sites,)" if model.obs_dim == 1 else "") + f", got {obs.shape}")
    return obs.ravel().tolist(), obs.shape[0]


class _Bar:
    """Progress of the engine's long phases: tqdm (terminal and Jupyter) when installed, else
    a line per phase on stderr; silent when ``show`` is False."""

    def __init__(self, show: Optional[bool]):
        self.show = sys.stderr.isatty() or "ipykernel" in sys.modules if show is None else show
        self.bar, self.key = None, None
        try:
            from tqdm.auto import tqdm
            self.tqdm = tqdm
        except ImportError:
            self.tqdm = None

    def __call__(self, kind, phase, done, total, train, val):
        if not self.show:
            return
        if kind == "warning":
            print(f"tfmpe: {phase}", file=sys.stderr)
        elif kind == "phase" and self.tqdm is None:
            print(f"tfmpe: {phase}", file=sys.stderr)
        elif kind in ("epoch", "samples") and self.tqdm is not None:
            if self.key != (kind, phase, total):
                self.close()
                unit = "epoch" if kind == "epoch" else "sample"
                self.bar, self.key = self.tqdm(total=total, desc=phase, unit=unit, leave=False), (kind, phase, total)
            self.bar.n = done
            if kind == "epoch":
                self.bar.set_postfix(train=f"{train:.4f}", val=f"{val:.4f}", refresh=False)
            self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()
        self.bar, self.key = None, None


def c2st(x, y, backend: str = "cpu") -> float:
    """C2ST between two sets of draws ``(n, d)``: the held-out accuracy of a classifier that
    tells them apart (sbibm's settings), 0.5 when it cannot."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"c2st takes two arrays (n, d) with the same d, got {x.shape} and {y.shape}")
    return _tfmpe.c2st(x.ravel().tolist(), y.ravel().tolist(), x.shape[1], backend)


def fit(model: Model, sites: int, budget: int, method: str = "lf", *, seed: int = 0,
        preset: str = "fast", max_epochs: Optional[int] = None, max_steps: Optional[int] = None,
        patience: Optional[int] = None, lr: Optional[float] = None,
        schedule: Optional[str] = None, batch_size: int = 100,
        max_sites: Optional[int] = None, backend: str = "auto",
        progress: Optional[bool] = None, width: Optional[int] = None,
        layers: Optional[int] = None, heads: Optional[int] = None,
        group_dim: Optional[int] = None, fourier_dim: Optional[int] = None,
        rounds: int = 1, observation=None,
        synthetic_sets: Optional[int] = None, fresh_sets: bool = False,
        ragged: bool = False, surrogate_scaling: Optional[str] = None,
        posterior_scaling: Optional[str] = None) -> "Posterior":
    """Trains the posterior of ``model`` for ``sites`` sites from ``budget`` single-site
    simulations. ``method`` is ``"lf"`` (likelihood factorisation), ``"direct"``, ``"pf"``
    (posterior factorisation: a global network, then a local network per site) or
    ``"joint"`` (lf with one network for the surrogate and the posterior);
    ``max_sites`` = M trains on every site count up to M. ``preset`` is the training recipe:
    ``"fast"`` (Adam at a peak of 1e-3, a warm-up and a cosine decay over 3 000 steps) or
    ``"paper"`` (the reference's: Adam 1e-4, up to 1 000 epochs, patience 100); the other
    training options override its parts (``max_epochs`` given alone sets the length).
    ``width``, ``layers``, ``heads``, ``group_dim`` and ``fourier_dim`` change the networks'
    sizes (``None``: 64, 2, 16, 32, 64). ``rounds`` > 1 (lf) runs sequential rounds whose
    simulations after the first are drawn from the posterior at ``observation`` (the model
    must give its prior density: a ``Model`` does, as do some built-in tasks).
    ``synthetic_sets`` (lf, joint) sizes the pool of synthetic training sets (``None``: five
    per training simulation, up to 90 000 sites in all, and at least one per simulation; more
    cost surrogate samples, not simulator calls); ``fresh_sets`` (lf)
    draws them anew every epoch; ``ragged`` (lf, a model whose sites may be observed at fewer
    values) trains on sites that keep a random number of their observations.
    ``surrogate_scaling`` (lf) is ``"marginal"`` or ``"conditional"`` (``None``: conditional
    where the fitted scale varies over the simulations by 10% or more, marginal otherwise):
    whether the surrogate also standardises each observation by a location and scale affine
    in its site's parameters (and input), so that observations far narrower than their spread
    over the prior come out as narrow as the simulator makes them. ``posterior_scaling`` (lf,
    direct) is ``"conditional"`` (``None``: the default) or ``"marginal"``: whether the
    posterior also standardises each site's locals by a location and scale that small
    networks learn from the globals and that site's data, and the globals by a location and
    scale learned from all the sites' data, so that parameters far narrower than their
    spread over the prior (a funnel's neck, a global every site informs) come out as narrow as
    the posterior makes them. The GIL is released while the engine runs; the simulator takes it back for each
    batch."""
    bar = _Bar(progress)
    train = dict(preset=preset, max_epochs=max_epochs, max_steps=max_steps, patience=patience,
                 lr=lr, schedule=schedule)
    arch = dict(width=width, layers=layers, heads=heads, group_dim=group_dim,
                fourier_dim=fourier_dim)
    values = None
    if observation is not None:
        values, observed_sites = _observation(model, observation)
        if observed_sites != sites:
            raise ValueError(f"the observation has {observed_sites} sites; fit is for {sites}")
    try:
        inner = _call(model, lambda: _tfmpe.fit(model._model, sites, budget, method, seed, train,
                                                arch, batch_size, backend, max_sites, bar,
                                                rounds, values, synthetic_sets, fresh_sets,
                                                ragged, surrogate_scaling,
                                                posterior_scaling))
    finally:
        bar.close()
    return Posterior(inner, model)


def load(path, model: Model, backend: str = "auto") -> "Posterior":
    """A posterior saved by ``Posterior.save`` or by ``tfmpe run`` (its folder)."""
    return Posterior(_tfmpe.load(str(path), model._model, backend), model)


class Posterior:
    """A trained posterior network for ``model``."""

    def __init__(self, inner, model: Model):
        self._inner, self.model = inner, model

    @property
    def sites(self) -> int:
        """The site count it was trained for (with ``max_sites``: the largest)."""
        return self._inner.sites

    @property
    def backend(self) -> str:
        return self._inner.backend

    def sample(self, observation, n: int = 1000, *, seed: int = 0, solver: str = "rk4",
               steps: int = 25, precision: str = "f32",
               progress: Optional[bool] = None) -> np.ndarray:
        """``n`` draws ``(n, param_dim)`` given one data set ``(sites, obs_dim)`` (or
        ``(sites,)``); columns as ``model.parameter_names(sites)``. ``precision="bf16"``
        rounds the linear layers' operands to bfloat16 (faster on CPUs with AVX-512 BF16,
        slower than f32 elsewhere; CPU backend and a fixed-step solver only)."""
        return self.sample_many([observation], n, seed=seed, solver=solver, steps=steps,
                                precision=precision, progress=progress)[0]

    def sample_many(self, observations, n: int = 1000, *, seed: int = 0, solver: str = "rk4",
                    steps: int = 25, precision: str = "f32",
                    progress: Optional[bool] = None) -> np.ndarray:
        """Draws for many data sets of one site count in one batched solve:
        ``(len(observations), n, param_dim)``; each data set's draws equal a call for it alone.
        ``precision`` as for :meth:`sample`."""
        flat = [_observation(self.model, o) for o in observations]
        if not flat:
            raise ValueError("sample_many needs at least one observation")
        sites = flat[0][1]
        if any(s != sites for _, s in flat):
            raise ValueError("sample_many takes data sets of one site count; call it once per count")
        values = [v for vs, _ in flat for v in vs]
        bar = _Bar(progress)
        try:
            out = _call(self.model, lambda: self._inner.sample_many(
                values, len(flat), sites, n, seed, solver, steps, None, bar, precision))
        finally:
            bar.close()
        return np.asarray(out).reshape(len(flat), n, -1)

    def save(self, path) -> None:
        """Writes ``posterior/`` (and ``surrogate/``, or pf's ``local/``) as ``tfmpe run``
        does; ``tfmpe.load`` and ``tfmpe sample`` read them."""
        self._inner.save(str(path))

    def report(self) -> dict:
        """The training report: wall time per phase, simulator calls, losses per epoch."""
        return json.loads(self._inner.report())

    def c2st(self, observation, samples: Optional[np.ndarray] = None, n: int = 1000,
             seed: int = 0, globals_only: bool = False) -> Optional[float]:
        """C2ST of draws at ``observation`` against the exact posterior (0.5 is perfect);
        None when the model has none. ``globals_only``: the same test on the global
        parameters' columns alone, which a joint C2ST over many sites can hide."""
        values, sites = _observation(self.model, observation)
        if samples is None:
            samples = self.sample(observation, n, seed=seed)
        flat = np.asarray(samples, dtype=np.float64).ravel().tolist()
        both = self._inner.c2st(values, sites, flat, n)
        return None if both is None else both[1 if globals_only else 0]

    def log_prob(self, params, observation, *, solver: str = "rk4", steps: int = 25,
                 divergence: str = "auto", probes: int = 8, seed: int = 0,
                 progress: Optional[bool] = None) -> np.ndarray:
        """The posterior's log density ln q(params | observation) at each row of ``params``
        ``(n, param_dim)`` (natural space; -inf outside the prior's support), by integrating
        the flow back to noise with ``solver``. ``divergence`` is ``"exact"`` (one backward
        pass per parameter), ``"hutchinson"`` (an unbiased estimate from ``probes`` random
        probes, seeded by ``seed``) or ``"auto"`` (exact up to 32 parameters)."""
        values, sites = _observation(self.model, observation)
        params = np.asarray(params, dtype=np.float64)
        if params.ndim == 1:
            params = params[None, :]
        dim = len(self.model.parameter_names(sites))
        if params.ndim != 2 or params.shape[1] != dim:
            raise ValueError(f"params has shape {params.shape}; {sites} sites need (n, {dim})")
        bar = _Bar(progress)
        try:
            out = _call(self.model, lambda: self._inner.log_prob(
                values, sites, params.ravel().tolist(), seed, solver, steps, divergence, probes,
                None, bar))
        finally:
            bar.close()
        return np.asarray(out)

    def calibration(self, data_sets: int = 100, draws: int = 99, *, seed: int = 0,
                    solver: str = "rk4", steps: int = 25, expected_coverage: bool = False,
                    divergence: str = "auto", probes: int = 8) -> dict:
        """SBC and TARP over ``data_sets`` data sets from the prior: ``{"sbc": ..., "tarp": ...}``,
        and with ``expected_coverage`` the HPD expected coverage from the log density
        (``"expected_coverage"``; see ``log_prob`` for ``divergence`` and ``probes``)."""
        chosen = divergence if expected_coverage else None
        text = _call(self.model, lambda: self._inner.calibration(
            data_sets, draws, seed, solver, steps, chosen, probes))
        return json.loads(text)

    def expected_coverage(self, data_sets: int = 100, draws: int = 99, **kw) -> dict:
        """The coverage of highest-posterior-density regions: KS p-value, ATC and the curve."""
        return self.calibration(data_sets, draws, expected_coverage=True, **kw)["expected_coverage"]

    def sbc(self, data_sets: int = 100, draws: int = 99, **kw) -> dict:
        """Simulation-based calibration: rank KS p-values per parameter, the lowest, histograms."""
        return self.calibration(data_sets, draws, **kw)["sbc"]

    def tarp(self, data_sets: int = 100, draws: int = 99, **kw) -> dict:
        """TARP coverage: KS p-value, ATC and the expected-coverage curve."""
        return self.calibration(data_sets, draws, **kw)["tarp"]

    def lc2st(self, observation, samples: Optional[np.ndarray] = None, n: int = 1000, *,
              data_sets: int = 1000, nulls: int = 100, alpha: float = 0.05, seed: int = 0,
              solver: str = "rk4", steps: int = 25) -> dict:
        """L-C2ST at ``observation``: statistic, p-value, reject and the settings."""
        values, sites = _observation(self.model, observation)
        if samples is None:
            samples = self.sample(observation, n, seed=seed)
        flat = np.asarray(samples, dtype=np.float64).ravel().tolist()
        text = _call(self.model, lambda: self._inner.lc2st(
            values, sites, flat, data_sets, nulls, alpha, seed, solver, steps))
        return json.loads(text)
