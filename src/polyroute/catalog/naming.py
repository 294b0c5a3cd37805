"""Names of models: one canonical id for the many spellings providers use.

``us.meta.llama3-3-70b-instruct-v1:0`` (Bedrock), ``meta-llama/Llama-3.3-70B-Instruct-Turbo``
(Together), ``accounts/fireworks/models/llama-v3p3-70b-instruct`` (Fireworks) and
``llama-3.3-70b-instruct`` all name ``llama-3.3-70b``; ``gpt-4o-2024-08-06`` is a snapshot of
``gpt-4o``. The rules are heuristics tuned on LiteLLM's keys; the importer reports what they
cannot place, and a user catalog file can correct any entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: LiteLLM's routing prefixes (``azure/gpt-4o``): not part of the name a provider is sent.
ROUTING_PREFIXES = frozenset(
    {
        "anthropic", "azure", "azure_ai", "bedrock", "bedrock_converse", "cerebras", "deepinfra",
        "deepseek", "fireworks_ai", "gemini", "groq", "meta_llama", "mistral", "openai",
        "together_ai", "vertex_ai", "xai",
    }
)  # fmt: skip
_BEDROCK_VENDOR = re.compile(
    r"^(?:(?:us|eu|apac|au|jp|ca|in|global|us-gov)\.)?"
    r"(anthropic|meta|mistral|deepseek|openai|amazon|cohere|ai21|google|qwen|minimax|moonshot"
    r"|moonshotai|nvidia|zai|xai|writer|twelvelabs)\.(.+)$"
)

# (pattern on the canonical id, creator); the first match wins.
_CREATORS = [
    (r"^(gpt-oss|gpt|o\d|chatgpt|computer-use|codex)", "openai"),
    (r"^claude", "anthropic"),
    (r"^(gemini|gemma|learnlm|medlm|deep-research)", "google"),
    (r"nemotron", "nvidia"),
    (r"^(llama|muse)", "meta"),
    (
        r"^(mistral|ministral|mixtral|codestral|magistral|devstral|pixtral|voxtral|open-mistral)",
        "mistral",
    ),
    (r"^deepseek", "deepseek"),
    (r"^grok", "xai"),
    (r"^(qwen|qwq)", "alibaba"),
    (r"^kimi", "moonshot"),
    (r"^(zai-)?glm", "zhipu"),
    (r"^minimax", "minimax"),
    (r"^nova", "amazon"),
    (r"^phi-", "microsoft"),
    (r"^command", "cohere"),
    (r"^jamba", "ai21"),
]
# Hugging Face style organisations in upstream ids, when the name alone says nothing.
_ORGS = {
    "meta-llama": "meta",
    "meta": "meta",
    "mistralai": "mistral",
    "deepseek-ai": "deepseek",
    "google": "google",
    "qwen": "alibaba",
    "moonshotai": "moonshot",
    "zai-org": "zhipu",
    "nvidia": "nvidia",
    "microsoft": "microsoft",
    "openai": "openai",
    "anthropic": "anthropic",
}


def upstream_id(key: str) -> str:
    """The name a provider is sent: LiteLLM's key less its routing prefix (``azure/``...)."""
    head, sep, rest = key.partition("/")
    return rest if sep and head in ROUTING_PREFIXES else key


def cleaned_name(upstream: str) -> tuple[str, str | None]:
    """Lower-cased model name without org, region, vendor and version decorations."""
    s = upstream.lower().removeprefix("accounts/fireworks/models/")
    org = None
    if "/" in s:
        org, s = s.rsplit("/", 1)
        org = org.split("/")[-1]
    m = _BEDROCK_VENDOR.match(s)
    if m:
        org, s = m[1], m[2]
        if org == "deepseek" and not s.startswith("deepseek"):
            s = f"deepseek-{s}"
    s = re.sub(r"-v?\d+:\d+$", "", s)  # Bedrock model versions: -v1:0, -1:0
    s = re.sub(r"-v1$", "", s) if m else s
    s = re.sub(r"@.*$", "", s)  # Vertex versions: @20241022, @default, @001
    s = re.sub(r"-maas$", "", s)
    s = re.sub(r"(\d)p(\d)", r"\1.\2", s)  # Fireworks spells 3.1 as 3p1
    return s, org


def _llama(s: str) -> str:
    m = re.match(r"^(?:meta-)?llama-?v?(\d+)(?:[.-](\d+))?-(.+)$", s)
    if not m:
        return s
    version = m[1] + (f".{m[2]}" if m[2] else "")
    drop = {"instruct", "turbo", "chat", "hf", "fp8", "basic", "versatile"}
    rest = [t for t in m[3].split("-") if t not in drop]
    if version == "4":  # Llama 4 is named by its variant; sizes and experts are one model
        rest = [t for t in rest if not re.fullmatch(r"\d+[be]", t)]
    return "-".join([f"llama-{version}", *rest])


def canonical_id(upstream: str) -> str:
    """One id for every spelling of a model: ``us.meta.llama3-3-70b-instruct-v1:0``,
    ``meta-llama/Llama-3.3-70B-Instruct-Turbo`` and ``llama-v3p3-70b-instruct`` all give
    ``llama-3.3-70b``; ``gpt-4o-2024-08-06`` gives ``gpt-4o``."""
    s, _ = cleaned_name(upstream)
    # Quantised or faster serving of one model; OpenAI's -turbo names other models.
    s = re.sub(r"-(fp8|fp4|turbo)$" if "/" in upstream else r"-(fp8|fp4)$", "", s)
    s = re.sub(r"-20\d\d-\d\d-\d\d$", "", s)  # -2024-08-06
    s = re.sub(r"-20\d{6}$", "", s)  # -20240620
    s = re.sub(r"-(0[1-9]|1[0-2])-20\d\d$", "", s)  # -09-2025
    s = re.sub(r"-\d{4}$", "", s)  # -0613, -2512
    if s.endswith("-latest") and "-" in s.removesuffix("-latest"):
        s = s.removesuffix("-latest")
    return _llama(s)


def creator_of(model_id: str, orgs: Iterable[str | None] = ()) -> str | None:
    for pattern, creator in _CREATORS:
        if re.search(pattern, model_id):
            return creator
    for org in orgs:
        if org in _ORGS:
            return _ORGS[org]
    return None


def family_of(model_id: str) -> str:
    tokens = model_id.split("-")
    if tokens[0] == "claude":
        tier = next((t for t in tokens if t in ("opus", "sonnet", "haiku")), None)
        return f"claude-{tier}" if tier else "claude"
    if re.fullmatch(r"o\d+", tokens[0]):
        return tokens[0]
    return "-".join(tokens[:2])
