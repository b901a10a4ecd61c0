"""Build every search engine: from a user-facing spec string (what ``--engine`` takes), or the training-time
simulator from its config section (:func:`build_simulator`, ``engine.simulator.*``).

Accepted specs (see :data:`ENGINE_SPECS`)::

    example                          BM25 over the shipped HotpotQA corpus (no setup)
    bm25:PATH_TO_CORPUS              BM25 over a corpus jsonl (index built once, then cached)
    dense:PATH_TO_CORPUS             embeddings + FAISS over a corpus jsonl (built once, cached)
    http://HOST:PORT/retrieve        a retrieval server with Search-R1's API (also retrieval:URL)
    google                           Google through SerpAPI (needs $SERPAPI_API_KEY; paid)
    simulated:MODEL                  an LLM writes the documents, in-process (path, hub id, zerosearch:*)
    simulated:http://HOST:PORT/v1    an LLM writes the documents, via an OpenAI-compatible server

Heavy libraries (bm25s, faiss, transformers) are imported only for the engine that needs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from zerosearch.search.base import SearchEngine, is_url

if TYPE_CHECKING:
    from zerosearch.config import SimulatorConfig

__all__ = [
    "ENGINE_SPECS", "build_configured_engine", "build_engine", "build_simulator", "check_engine_spec",
    "engine_fingerprint", "engine_kind", "naming_key",
]

ENGINE_SPECS = """\
  example                          BM25 over the shipped HotpotQA corpus
  bm25:PATH_TO_CORPUS              BM25 over a corpus jsonl, e.g. bm25:data/wiki-18.jsonl
  dense:PATH_TO_CORPUS             embeddings + FAISS, e.g. dense:data/wiki-18.jsonl
  http://HOST:PORT/retrieve        a Search-R1 style retrieval server, e.g. http://127.0.0.1:8000/retrieve
  retrieval:URL                    the same, e.g. retrieval:http://127.0.0.1:8000/retrieve
  google                           Google through SerpAPI (set SERPAPI_API_KEY)
  simulated:MODEL                  a simulation LLM in-process, e.g. simulated:zerosearch:smollm2-135m-instruct
  simulated:URL                    a simulation LLM behind an OpenAI-compatible server,
                                   e.g. simulated:http://127.0.0.1:8001/v1"""

# option names each kind of engine accepts (anything else is a mistake worth reporting)
_LOCAL_OPTIONS = {"index_dir", "encoder"}
_HTTP_OPTIONS = {"timeout", "max_retries", "backoff", "backoff_max", "batch_size"}
_GOOGLE_OPTIONS = {"api_key", "key_env", "timeout", "max_retries", "backoff", "backoff_max",
                   "max_concurrency", "cache_size"}
_SIMULATED_OPTIONS = {"mode", "max_tokens", "temperature", "useful_template", "noisy_template"}
_IN_PROCESS_OPTIONS = {"device", "dtype", "max_batch_size", "seed", "prefix_cache"}
_OPENAI_OPTIONS = {"served_model", "api_key", "max_concurrency", "timeout", "max_retries", "backoff",
                   "backoff_max"}


def _unknown_spec(spec: str) -> ValueError:
    return ValueError(f"unknown search engine {spec!r}; accepted forms:\n{ENGINE_SPECS}")


def _check_options(spec: str, options: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(options) - allowed)
    if extra:
        raise ValueError(
            f"option(s) {', '.join(extra)} do not apply to engine {spec!r}; "
            f"it takes: {', '.join(sorted(allowed)) or 'no options'}"
        )


def _retrieval_url(url: str) -> str:
    """``http://host:port`` or ``.../`` becomes ``http://host:port/retrieve``."""
    from urllib.parse import urlsplit

    return url.rstrip("/") + "/retrieve" if urlsplit(url).path in ("", "/") else url


def _openai_base_url(url: str) -> str:
    """``http://host:port`` becomes ``http://host:port/v1`` (the OpenAI API root)."""
    from urllib.parse import urlsplit

    return url.rstrip("/") + "/v1" if urlsplit(url).path in ("", "/") else url


def _require_corpus(kind: str, corpus: str) -> None:
    if not corpus:
        raise ValueError(f"{kind}: needs a corpus file after the colon, e.g. {kind}:data/corpus.jsonl")


def _require_url(url: str) -> None:
    if not is_url(url):
        raise ValueError(f"retrieval: needs an http(s) URL, e.g. retrieval:http://127.0.0.1:8000/retrieve; got {url!r}")


def _require_target(target: str) -> None:
    if not target:
        raise ValueError("simulated: needs a model after the colon, e.g. simulated:zerosearch:smollm2-135m-instruct "
                         "or simulated:http://127.0.0.1:8001/v1")


def _local(kind: str, corpus: str, spec: str, options: dict[str, Any]) -> SearchEngine:
    _check_options(spec, options, _LOCAL_OPTIONS)
    _require_corpus(kind, corpus)
    from zerosearch.search.local_index import LocalIndexEngine, open_or_build_index

    return LocalIndexEngine(open_or_build_index(corpus, kind, **options))


def _example(spec: str, options: dict[str, Any]) -> SearchEngine:
    from zerosearch.datasets import default_corpus

    _check_options(spec, options, {"index_dir"})
    return _local("bm25", default_corpus(), spec, options)


def _retrieval(url: str, spec: str, options: dict[str, Any]) -> SearchEngine:
    _check_options(spec, options, _HTTP_OPTIONS)
    _require_url(url)
    from zerosearch.search.http_engine import RetrievalHTTPEngine

    return RetrievalHTTPEngine(_retrieval_url(url), **options)


def _google(spec: str, options: dict[str, Any]) -> SearchEngine:
    _check_options(spec, options, _GOOGLE_OPTIONS)
    from zerosearch.search.serpapi import SerpAPIEngine

    return SerpAPIEngine(**options)


def _split(options: dict[str, Any], names: set[str]) -> dict[str, Any]:
    return {key: options[key] for key in names if key in options}


def _served_model_name(base_url: str, api_key: str | None) -> str:
    """The one model an OpenAI-compatible server serves (asked from its ``/models``)."""
    import openai

    try:
        with openai.OpenAI(base_url=base_url, api_key=api_key or "EMPTY", max_retries=1, timeout=10) as client:
            names = [model.id for model in client.models.list()]
    except openai.OpenAIError as exc:
        raise ValueError(
            f"could not ask {base_url} which model it serves ({type(exc).__name__}: {exc}); "
            "is the server up? Or name the model with --served-model"
        ) from None
    if len(names) != 1:
        raise ValueError(f"{base_url} serves {names or 'no models'}; name the simulation model with --served-model")
    return names[0]


def _simulated(target: str, spec: str, options: dict[str, Any]) -> SearchEngine:
    from zerosearch.search.simulated import SimulatedSearchEngine

    _require_target(target)
    engine_options = _split(options, _SIMULATED_OPTIONS)
    backend_options = {key: value for key, value in options.items() if key not in _SIMULATED_OPTIONS}
    if is_url(target):
        _check_options(spec, options, _SIMULATED_OPTIONS | _OPENAI_OPTIONS)
        from zerosearch.llm.openai_backend import OpenAIChatModel

        base_url = _openai_base_url(target)
        served = backend_options.pop("served_model", None) or _served_model_name(
            base_url, backend_options.get("api_key")
        )
        chat_model: Any = OpenAIChatModel(served, base_url, **backend_options)
    else:
        _check_options(spec, options, _SIMULATED_OPTIONS | _IN_PROCESS_OPTIONS)
        from zerosearch.llm.models import resolve_model_path
        from zerosearch.llm.transformers_backend import TransformersChatModel

        chat_model = TransformersChatModel(resolve_model_path(target), **backend_options)
    return SimulatedSearchEngine(chat_model, **engine_options)


def build_simulator(sim: SimulatorConfig, *, policy_model: str, device: Any = "cpu", dtype: Any = None,
                    autocast: Any = None, kv_cache: str = "dynamic") -> SearchEngine:
    """The simulated engine a training config's ``engine.simulator`` section describes.

    ``backend=openai``: any OpenAI-compatible server at ``base_url``, its API key from ``$api_key_env``.
    ``backend=transformers``: the model in-process on ``device`` (``dtype``, ``autocast`` and ``kv_cache`` as the
    run's), its requests batched ``max_batch_size`` at a time, the prompts' shared start cached
    (``prefix_cache``). ``model=policy`` is ``policy_model``, a frozen copy of the run's starting model. Raises
    ConfigError naming ``engine.simulator.model`` for an in-process model without a chat template.
    """
    from zerosearch.search.simulated import SimulatedSearchEngine

    target = policy_model if sim.model == "policy" else sim.model
    if sim.backend == "openai":
        import os

        from zerosearch.llm.openai_backend import OpenAIChatModel

        chat: Any = OpenAIChatModel(model=target, base_url=sim.base_url, api_key=os.environ.get(sim.api_key_env),
                                    max_concurrency=sim.max_concurrency, timeout=sim.timeout,
                                    max_retries=sim.max_retries)
    else:
        from zerosearch.config import ConfigError
        from zerosearch.llm.models import load_tokenizer, resolve_model_path
        from zerosearch.llm.transformers_backend import TransformersChatModel

        path = resolve_model_path(target)
        tokenizer = load_tokenizer(path)
        if not getattr(tokenizer, "chat_template", None):  # named here, not as the chat backend's tokenizer fault
            which = f"the policy's model {policy_model}" if sim.model == "policy" else sim.model
            raise ConfigError(f"engine.simulator.model={sim.model}: the simulator writes documents as a chat model, "
                              f"but {which} has no chat template; set engine.simulator.model to an instruct model "
                              "(e.g. zerosearch:smollm2-135m-instruct, or zerosearch:tiny with a tiny policy)")
        chat = TransformersChatModel(path, tokenizer=tokenizer, device=str(device), dtype=dtype,
                                     max_batch_size=sim.max_batch_size, autocast=autocast, kv_cache=kv_cache,
                                     prefix_cache=sim.prefix_cache)
    return SimulatedSearchEngine(chat, mode=sim.mode, max_tokens=sim.max_tokens, temperature=sim.temperature)


_PREFIXED: dict[str, Callable[[str, str, dict[str, Any]], SearchEngine]] = {
    "bm25": lambda rest, spec, options: _local("bm25", rest, spec, options),
    "dense": lambda rest, spec, options: _local("dense", rest, spec, options),
    "retrieval": _retrieval,
    "simulated": _simulated,
}


def build_engine(spec: str, **options: Any) -> SearchEngine:
    """The engine ``spec`` names (forms: :data:`ENGINE_SPECS`), built with ``options``.

    Options go to the engine's constructor (e.g. ``index_dir``/``encoder`` for bm25/dense,
    ``timeout``/``batch_size`` for a retrieval server, ``mode``/``served_model``/``device`` for a
    simulated engine); an option the engine does not take is a ``ValueError``, as is an unknown spec.
    Options whose value is ``None`` are ignored, so CLI flags left unset need no filtering.
    """
    spec = spec.strip()
    options = {key: value for key, value in options.items() if value is not None}
    if spec == "example":
        return _example(spec, options)
    if spec == "google":
        return _google(spec, options)
    if is_url(spec):
        return _retrieval(spec, spec, options)
    kind, sep, rest = spec.partition(":")
    if sep and kind in _PREFIXED:
        return _PREFIXED[kind](rest.strip(), spec, options)
    raise _unknown_spec(spec)


@contextmanager
def naming_key(key: str, spec: str) -> Iterator[None]:
    """Turn a bad engine spec's ValueError into a ConfigError naming the config key it was read from
    (``engine.spec``, ``warmup.engine``, ``final_eval.engine``), which the command line reports in one line."""
    from zerosearch.config import ConfigError

    try:
        yield
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{key}={spec!r}: {exc}") from None


def build_configured_engine(spec: str, key: str, **options: Any) -> SearchEngine:
    """:func:`build_engine` for a spec read from the config key ``key`` (see :func:`naming_key`)."""
    with naming_key(key, spec):
        return build_engine(spec, **options)


def engine_kind(spec: str) -> str | None:
    """The kind of engine ``spec`` names, read as :func:`build_engine` reads it: ``example``, ``bm25``,
    ``dense``, ``retrieval``, ``google``, ``simulated_url`` or ``simulated_model``; None for no known form."""
    spec = spec.strip()
    if spec in ("example", "google"):
        return spec
    if is_url(spec):
        return "retrieval"
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in _PREFIXED:
        return None
    if kind == "simulated":
        return "simulated_url" if is_url(rest.strip()) else "simulated_model"
    return kind


def engine_fingerprint(spec: str) -> dict[str, Any]:
    """What shapes the documents ``spec``'s engine returns, for a cache key (the evaluation baselines, the
    warm-up), by content wherever it can be seen from here:

    * ``example``, ``bm25:FILE``, ``dense:FILE``: the index's inputs (the corpus file's bytes, and the dense
      encoder's files: :func:`~zerosearch.search.local_index.index_inputs_key`), so editing the corpus in
      place gives another key;
    * ``simulated:MODEL``: the model's files (:func:`~zerosearch.llm.models.model_fingerprint`);
    * a retrieval server, ``simulated:URL`` and ``google``: their address or name only. What they serve
      cannot be seen from here: a cache keyed by them is stale once the server's corpus, the served model or
      the web changes (delete ``$ZEROSEARCH_CACHE/evals``, or run ``zerosearch warmup --force``).

    Raises the ValueError :func:`check_engine_spec` raises for a spec that names nothing.
    """
    kind = engine_kind(spec)
    if kind is None:
        raise _unknown_spec(spec.strip())
    rest = spec.strip().partition(":")[2].strip()
    if kind in ("example", "bm25", "dense"):
        from zerosearch.search.local_index import index_inputs_key

        if kind == "example":
            from zerosearch.datasets import default_corpus

            kind, rest = "bm25", default_corpus()
        _require_corpus(kind, rest)
        return {"kind": kind, "index_inputs": index_inputs_key(rest, kind)}
    if kind == "simulated_model":
        from zerosearch.llm.models import model_fingerprint, resolve_model_path

        return {"kind": kind, "model": model_fingerprint(resolve_model_path(rest))}
    return {"kind": kind, "address": spec.strip()}  # a server or the web: not visible from here


def check_engine_spec(spec: str) -> None:
    """What can be checked of ``spec`` without building its engine (no index is built, no model loads, no
    server is asked): a known form, an existing corpus file, an http(s) URL, a model that resolves, a
    SerpAPI key in the environment. Raises the ValueError :func:`build_engine` would (ModelNotFoundError
    for a model), so that a spec used only at the end of a long job is found wrong at its start.
    """
    kind = engine_kind(spec)
    if kind is None:
        raise _unknown_spec(spec.strip())
    rest = spec.strip().partition(":")[2].strip()
    if kind in ("bm25", "dense"):
        _require_corpus(kind, rest)
        if not Path(rest).is_file():
            raise ValueError(f"{kind}: corpus file {rest} does not exist")
    elif kind == "retrieval" and not is_url(spec.strip()):
        _require_url(rest)
    elif kind == "google":
        import os

        from zerosearch.search.serpapi import KEY_ENV_VARS

        if not any(os.environ.get(name) for name in KEY_ENV_VARS):
            raise ValueError(f"google needs a SerpAPI key in ${KEY_ENV_VARS[0]} (or ${KEY_ENV_VARS[1]})")
    elif kind == "simulated_model":
        from zerosearch.llm.models import check_model_spec

        _require_target(rest)
        check_model_spec(rest)  # a built-in is converted when the engine is built, not by this check
