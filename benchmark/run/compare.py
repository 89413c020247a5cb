"""`compare`: named encoders against the built-in baselines on a protocol's folds, with no YAML written.

A protocol is a repeated-CV suite (`quick`, `default`, or one of the user's). The comparison suite it makes holds
that suite's tasks and systems, the paper's configuration (`paper-defaults`) as the reference, and, per named
encoder, the paper's configuration with that encoder in its place (`paper-<modality>-<encoder>`; with molecule and
text encoders both named, every pair too). With `tuned`, a system that searches the protocol's tuned space with the
named encoders added to its encoder choices joins them. Spaces, systems and the suite are registered in this
process only (a resume names the same encoders again); the run reuses the fits that the store already holds for
the baselines on folds with the same checksums (`RunOptions.reuse_fits`), so only the new systems train.
"""

from __future__ import annotations

import hashlib
import json
import re

from benchmark.core.errors import ConfigError
from benchmark.encoders.registry import check_encoder_name, encoders_of
from benchmark.tasks.specs import SUITES, SYSTEMS, SuiteSpec, SystemSpec, get_suite, get_system
from benchmark.tuning.space import ParamSpec, SearchSpace, load_search_space, register_search_space

#: the reference every named encoder is compared with: the paper's configuration
REFERENCE = "paper-defaults"
ORIGIN = "python -m benchmark compare"
SIDES = {"molecule": "mol_encoder", "text": "text_encoder"}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-") or "encoder"


def _checked(names: list[str], modality: str) -> list[str]:
    for name in names:
        entry = check_encoder_name(name)  # unknown: "did you mean", a broken plugin: its import error
        if entry.modality != modality:
            flag = "--mol-encoder" if entry.modality == "molecule" else "--text-encoder"
            raise ConfigError(
                f"{name!r} is a {entry.modality} encoder; pass it with {flag} "
                f"({modality} encoders: {', '.join(encoders_of(modality))})"
            )
    return list(dict.fromkeys(names))


def _with_encoders(space: SearchSpace, name: str, description: str, encoders: dict[str, str]) -> SearchSpace:
    base = json.loads(json.dumps(space.base))
    for side, encoder in encoders.items():
        base[SIDES[side]] = {"name": encoder}
    return SearchSpace(name=name, description=description, base=base, parameters=space.parameters, terms=space.terms)


def _register(space: SearchSpace, description: str, **spec) -> str:
    register_search_space(space)
    name = space.name
    system = SystemSpec(name=name, description=description, search_space=name, **spec)
    if name in SYSTEMS:
        if SYSTEMS.get(name) != system:
            raise ConfigError(f"system {name!r} exists already ({SYSTEMS.origin(name)}) with other settings")
    else:
        SYSTEMS.register(name, system, origin=ORIGIN)
    return name


def paper_systems(mol: list[str], text: list[str]) -> list[str]:
    """The paper's configuration with each named encoder in place (and each named pair)."""
    paper = load_search_space(get_system(REFERENCE).search_space)
    combos = [{"molecule": m} for m in mol] + [{"text": t} for t in text]
    combos += [{"molecule": m, "text": t} for m in mol for t in text]
    names = []
    for combo in combos:
        label = "-".join(f"{'mol' if side == 'molecule' else 'text'}-{_slug(e)}" for side, e in combo.items())
        words = " and ".join(f"{e} ({side})" for side, e in combo.items())
        description = f"The paper's configuration with {words} in place of its encoder(s) (compare)."
        names.append(_register(_with_encoders(paper, f"paper-{label}", description, combo), description))
    return names


def tuned_system(protocol: SuiteSpec, mol: list[str], text: list[str]) -> str:
    """The protocol's tuned system, searching over the named encoders besides its own choices."""
    tuned = [get_system(s) for s in protocol.systems if _is_tuned(get_system(s).search_space)]
    if not tuned:
        raise ConfigError(f"--tuned: protocol {protocol.name!r} has no tuned system to extend with the encoders")
    spec = tuned[0]
    space = load_search_space(spec.search_space)
    parameters = dict(space.parameters)
    base_choice = space.trial_config({})
    for side, named in (("molecule", mol), ("text", text)):
        if not named:
            continue
        key = f"{SIDES[side]}/name"
        current = parameters.get(key)
        own = list(current.choices) if current is not None else [getattr(base_choice, SIDES[side]).name]
        parameters[key] = ParamSpec(type="categorical", choices=tuple(dict.fromkeys(own + named)))
    label = "-".join(_slug(e) for e in mol + text)
    description = f"{spec.description} Encoder choices extended with {', '.join(mol + text)} (compare)."
    extended = SearchSpace(
        name=f"{spec.name}-with-{label}", description=description, base=space.base, parameters=parameters,
        terms=space.terms,
    )  # fmt: skip
    return _register(
        extended,
        description,
        num_samples=spec.num_samples,
        successive_halving=spec.successive_halving,
        halving_factor=spec.halving_factor,
    )


def _is_tuned(space_name: str) -> bool:
    space = load_search_space(space_name)
    return bool(space.parameters or space.terms)


def comparison_suite(protocol: str, mol: list[str], text: list[str], *, tuned: bool = False) -> str:
    """Register the comparison of the named encoders under `protocol` (a repeated-CV suite); returns its name."""
    if not mol and not text:
        raise ConfigError("name at least one encoder: --mol-encoder NAME and/or --text-encoder NAME")
    base = get_suite(protocol)
    if not base.systems:
        cv = ", ".join(n for n in SUITES.names() if SUITES.get(n).systems)
        raise ConfigError(f"protocol {protocol!r} is a holdout suite; compare runs repeated-CV suites: {cv}")
    mol, text = _checked(mol, "molecule"), _checked(text, "text")
    systems = list(base.systems) + ([REFERENCE] if REFERENCE not in base.systems else [])
    systems += paper_systems(mol, text)
    if tuned:
        systems.append(tuned_system(base, mol, text))
    key = hashlib.sha256(json.dumps([protocol, mol, text, tuned]).encode()).hexdigest()[:8]
    name = f"compare-{protocol}-{key}"
    baselines = ", ".join(dict.fromkeys(systems[: len(base.systems) + 1]))
    suite = base.model_copy(
        update={
            "name": name,
            "description": f"{', '.join(mol + text)} against {baselines} on the folds of {protocol!r}",
            "systems": tuple(dict.fromkeys(systems)),
        }
    )
    if name not in SUITES:
        SUITES.register(name, suite, origin=ORIGIN)
    return name
