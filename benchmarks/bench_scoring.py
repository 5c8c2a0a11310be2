"""Scoring benchmark: memguard's scorer against the naive path, side by side, on random weights.

    python benchmarks/bench_scoring.py --quick              # CPU, scaled-down shape, a few minutes
    python benchmarks/bench_scoring.py --quick --only cut   # just the 40K-token exact vs shared cut row
    python benchmarks/bench_scoring.py --shape qwen3-1.7b --device cuda --lengths 8192 32768 --gpu-report

Models are built from config with random weights (nothing is downloaded). Prompts are real
SWE-agent trajectories (../shared/data/trajectories, else the bundled ones) rendered by the
protocol and stretched to the target token counts with the real Qwen tokenizer.

"naive" is the seed card's usage: an unmerged PeftModel, `model(**tokenizer(prompt))` computing
every position's logits, one full prefill per candidate. "memguard" is `MemRM.score`: merged
LoRA, last-position logits, one run of the candidates' shared prefix, either layer-streamed
("stream", the default with the prefix store off) or prefilled into a whole KV cache ("cache").

Shapes. `qwen3-1.7b` is the real one. `mini` keeps roughly Qwen3-1.7B's FLOP proportions per
token (body : attention at 16K : full lm_head = 1 : 1.3 : 0.25; the real model has 1 : 0.67 : 0.22)
at ~1/200 of the cost, so speed ratios carry over: 2 layers, hidden 256, 4x64 query heads, 2 KV
heads, MLP 3840, a 6,144-row vocabulary with the real tokenizer's ids folded into it (the lm_head
of a 151,936-row vocabulary would otherwise dominate a small model and flatter memguard).
The cut section (`--cut-lengths`, default 40,960 tokens of context) scores k = 3 candidates whose
proposed actions differ in length over a context longer than `max_length` (32,768 positions):
the exact cut (default) cuts each candidate at its own offset, so they share no prefix and each is
prefilled; the shared cut (`MemRM(cut="shared")`) starts them all at one offset, so one prefill of
the cut view serves all three. Both are compared with one candidate alone (one cut prefill), and
|dP| between the two cuts is reported.
Two shapes for peak memory (`--memory-configs`, run in bf16 like the real model) keep the real
151,936-row tied vocabulary, so the naive path's full logits weigh 297 KiB per token as in
Qwen3-1.7B, and bracket the rest: `vocab` has the real MLP width (6144: 36 KiB of MLP temporaries
per token) in 2 narrow layers (a KV cache far smaller than the real one); `deep` has the real 28
layers of 8 KV heads x 128 (112 KiB of KV per token, the real figure) around a narrow body (MLP
temporaries understated), so it shows what keeping the whole prefix KV costs against streaming it.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch

SHAPES: dict[str, dict[str, Any]] = {
    "qwen3-1.7b": dict(num_hidden_layers=28, hidden_size=2048, intermediate_size=6144,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151_936),
    "mini": dict(num_hidden_layers=2, hidden_size=256, intermediate_size=3840,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=64, vocab_size=6144),
    "vocab": dict(num_hidden_layers=2, hidden_size=512, intermediate_size=6144,
                  num_attention_heads=8, num_key_value_heads=4, head_dim=64, vocab_size=151_936),
    "deep": dict(num_hidden_layers=28, hidden_size=256, intermediate_size=768,
                 num_attention_heads=8, num_key_value_heads=8, head_dim=128, vocab_size=151_936),
}
DEFAULT_MEMORY_CONFIGS = ["vocab:16384:1,3", "deep:4096:3"]
MODES = ("stream", "cache")  # memguard's two ways of running a shared prefix
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 tensor-core peaks
PROPOSALS = ["ls -la", "cat setup.py", "grep -rn 'def main' ."]
STRATEGIES = ["observation_masking", "recent_window", "keep_more"]


# ------------------------------------------------------------------------------ models


class FoldedEmbedding(torch.nn.Module):
    """The tokenizer's ids folded into a smaller vocabulary (compute shape only; weights are random)."""

    def __init__(self, embedding: torch.nn.Embedding) -> None:
        super().__init__()
        self.inner = embedding
        self.weight = embedding.weight  # keeps tie_word_embeddings working

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.inner(ids % self.inner.num_embeddings)


def build_models(shape: str, device: str, dtype: torch.dtype, quant: str | None, need: set[str]):
    """(tokenizer, {"naive": unmerged PeftModel, "memguard": merged model}) from one random base."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from memguard.testing import LORA_SETTINGS, build_qwen_tokenizer, load_tokenizer

    tok = load_tokenizer(build_qwen_tokenizer())
    torch.manual_seed(0)
    folded = SHAPES[shape]["vocab_size"] < len(tok)
    config = Qwen3Config(**SHAPES[shape], max_position_embeddings=40_960, rope_theta=1_000_000.0,
                         tie_word_embeddings=True, initializer_range=0.02, bos_token_id=None,
                         eos_token_id=None if folded else tok.eos_token_id,
                         pad_token_id=None if folded else tok.pad_token_id)
    with torch.device(device if quant is None else "cpu"):
        base = Qwen3ForCausalLM(config).to(dtype).eval()
    if quant == "nf4":
        base = _reload_nf4(base, device)
    if folded:
        base.model.embed_tokens = FoldedEmbedding(base.model.embed_tokens)
    models: dict[str, Any] = {}
    if "naive" in need:
        naive_base = copy.deepcopy(base) if "memguard" in need and quant is None else base
        models["naive"] = _with_lora(naive_base, LORA_SETTINGS, merge=False)
    if "memguard" in need:
        models["memguard"] = _with_lora(base, LORA_SETTINGS, merge=quant is None)
    return tok, models


def _with_lora(model, settings, *, merge: bool):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    peft = get_peft_model(model, LoraConfig(**settings)).eval()
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.01)
    return peft.merge_and_unload().eval() if merge else peft


def _reload_nf4(model, device: str):
    """NF4 through the same loading path users take (save, then load with a BitsAndBytesConfig)."""
    from transformers import AutoModelForCausalLM

    from memguard.scoring.local import _nf4_config

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        return AutoModelForCausalLM.from_pretrained(tmp, quantization_config=_nf4_config(),
                                                    device_map={"": device}, dtype=torch.bfloat16).eval()


# ------------------------------------------------------------------------------ workloads


def trajectory_messages() -> list[dict]:
    from memguard.data import bundled_trajectories, load_trajectory

    folder = Path(os.environ.get("MEMGUARD_TRAJECTORIES", REPO.parent / "shared/data/trajectories"))
    paths = sorted(folder.glob("*.json")) if folder.is_dir() else bundled_trajectories()
    messages: list[dict] = []
    for path in paths:
        messages.extend(m for m in load_trajectory(path) if m.get("role") != "system" or not messages)
    return messages


def stretched_view(tok, n_tokens: int, pool: list[dict]) -> list[dict]:
    """Real turns, cycled until the rendered view holds about `n_tokens` tokens."""
    from memguard.protocol import render_block

    view, total, i = [], 0, 0
    budget = n_tokens - 120  # the judgment turn and `Answer:`
    while total < budget:
        m = dict(pool[i % len(pool)])
        i += 1
        cost = len(tok.encode(render_block(m), add_special_tokens=False)) + 1
        if total + cost > budget and isinstance(m.get("content"), str):
            keep = max(1, int(len(m["content"]) * (budget - total) / cost))
            m["content"] = m["content"][:keep]
            cost = len(tok.encode(render_block(m), add_special_tokens=False)) + 1
        view.append(m)
        total += cost
    return view


def event_prompts(view: list[dict], k: int) -> list[str]:
    from memguard.protocol import perturbation_tag, render_prompt

    step = sum(1 for m in view if m.get("role") == "assistant")
    return [render_prompt(view, step=step, recorded="python reproduce.py", proposed=PROPOSALS[i],
                          perturbation=perturbation_tag(STRATEGIES[i])) for i in range(k)]


# ------------------------------------------------------------------------------ scorers


def naive_scores(model, tok, prompts: list[str]) -> list[float]:
    """The seed card's way: whole prompt, every position's logits, one prefill per candidate."""
    y_id, n_id = tok.encode(" Y")[0], tok.encode(" N")[0]
    out = []
    device = next(model.parameters()).device
    with torch.no_grad():
        for prompt in prompts:
            inputs = tok(prompt, return_tensors="pt").to(device)
            logits = model(**inputs).logits
            out.append(float(torch.softmax(logits[0, -1, [y_id, n_id]].float(), -1)[1]))
            del logits
    return out


def make_memrm(model, tok, **options):
    """A fresh scorer: cold tokenizer and prefix caches, like a new event; no prefix store."""
    from memguard import MemRM

    options.setdefault("prefix_cache_bytes", 0)
    return MemRM.from_model(model, tok, **options)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return min(times), result


def rss_peak_bytes() -> int:
    """Peak RSS of this process: VmHWM (resettable), else getrusage's ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def rss_now_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss_peak_bytes()


def reset_rss_peak() -> bool:
    """Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------ sections


def bench_speed(args, tok, models, pool) -> list[dict]:
    rows = []
    for n in args.lengths:
        view = stretched_view(tok, n, pool)
        for k in args.ks:
            prompts = event_prompts(view, k)
            row: dict[str, Any] = {"n_tokens": n, "k": k}
            methods = ["naive", "memguard"] + (["memguard_cache"] if k > 1 else [])
            for method in methods:
                if method.split("_")[0] not in models:
                    continue
                if method == "naive":
                    fn = lambda prompts=prompts: naive_scores(models["naive"], tok, prompts)
                else:  # "memguard" streams the shared prefix (no store); "memguard_cache" keeps its KV
                    mode = "cache" if method == "memguard_cache" else "stream"
                    fn = lambda mode=mode, prompts=prompts: [
                        s.p_harmful for s in make_memrm(models["memguard"], tok, prefix_mode=mode).score(prompts)]
                if device_is_cuda(args):
                    torch.cuda.reset_peak_memory_stats()
                    base_mem = torch.cuda.memory_allocated()
                seconds, p = timed(fn, args.device, args.repeats)
                row[f"{method}_s"] = seconds
                row[f"{method}_p"] = p
                if device_is_cuda(args):
                    row[f"{method}_peak_bytes"] = torch.cuda.max_memory_allocated() - base_mem
            row["tokens"] = sum(len(tok.encode(p, add_special_tokens=False)) for p in prompts) // k
            if "naive_s" in row and "memguard_s" in row:
                row["speedup"] = row["naive_s"] / row["memguard_s"]
                row["max_abs_diff_p"] = max(abs(a - b) for a, b in zip(row["naive_p"], row["memguard_p"]))
            if "memguard_cache_s" in row:
                row["stream_vs_cache"] = row["memguard_s"] / row["memguard_cache_s"]
                row["max_abs_diff_p_stream_cache"] = max(abs(a - b) for a, b in zip(row["memguard_p"], row["memguard_cache_p"]))
            rows.append(row)
            print(f"  speed n={n} k={k}: " + ", ".join(f"{m}={row[m + '_s']:.3f}s" for m in methods if m + "_s" in row), flush=True)
    return rows


def bench_cut(args, tok, models, pool) -> list[dict]:
    """k = 3 candidates over a context past max_length: exact cut vs shared cut vs one cut prefill."""
    model = models["memguard"]
    embed = model.model.embed_tokens
    seen = {"tokens": 0}

    def count(_module: Any, inputs: Any) -> None:
        seen["tokens"] += int(inputs[0].numel())

    for cut in ("exact", "shared"):  # warm up both paths (allocator, kernels) on a short event
        make_memrm(model, tok, max_length=512, cut=cut).score(event_prompts(stretched_view(tok, 700, pool), 3))
    handle = embed.register_forward_pre_hook(count)
    rows = []
    try:
        for n in args.cut_lengths:
            view = stretched_view(tok, n, pool)
            prompts = event_prompts(view, 3)
            row: dict[str, Any] = {"n_tokens": n, "k": 3, "max_length": args.max_length}
            runs = {"exact": ("exact", prompts), "shared": ("shared", prompts), "one": ("exact", prompts[:1])}
            for name, (cut, batch) in runs.items():
                seen["tokens"] = 0
                score = lambda cut=cut, batch=batch: make_memrm(model, tok, max_length=args.max_length,
                                                                 cut=cut).score(batch)
                seconds, scores = timed(score, args.device, args.repeats)
                row[f"{name}_s"] = seconds
                row[f"{name}_forward_tokens"] = seen["tokens"] // args.repeats
                row[f"{name}_p"] = [s.p_harmful for s in scores]
                row[f"{name}_truncated"] = [s.n_truncated for s in scores]
                row["kept_tokens"] = max(s.n_tokens for s in scores)
            row["shared_over_one"] = row["shared_s"] / row["one_s"]
            row["exact_over_shared"] = row["exact_s"] / row["shared_s"]
            row["max_abs_diff_p"] = max(abs(a - b) for a, b in zip(row["exact_p"], row["shared_p"]))
            row["extra_cut"] = [s - e for s, e in zip(row["shared_truncated"], row["exact_truncated"])]
            rows.append(row)
            print(f"  cut n={n} k=3: exact {row['exact_s']:.2f} s ({row['exact_forward_tokens']} tok run), "
                  f"shared {row['shared_s']:.2f} s ({row['shared_forward_tokens']} tok), one prompt "
                  f"{row['one_s']:.2f} s; max|dP| {row['max_abs_diff_p']:.2e}", flush=True)
    finally:
        handle.remove()
    return rows


def device_is_cuda(args) -> bool:
    return args.device.startswith("cuda")


def memory_methods(k: int) -> list[str]:
    """naive, and memguard in each prefix mode where the mode matters (a lone prompt keeps no KV)."""
    return ["naive", *(f"memguard_{mode}" for mode in MODES)] if k > 1 else ["naive", "memguard"]


def cuda_memory_row(speed_row: dict, args) -> dict:
    """On CUDA the speed runs already measured peak allocation; rename them like the CPU probes."""
    row = {"n_tokens": speed_row["n_tokens"], "k": speed_row["k"], "shape": args.shape, "dtype": args.dtype,
           "naive_peak_bytes": speed_row["naive_peak_bytes"]}
    if speed_row["k"] > 1:
        row["memguard_stream_peak_bytes"] = speed_row["memguard_peak_bytes"]
        row["memguard_cache_peak_bytes"] = speed_row["memguard_cache_peak_bytes"]
    else:
        row["memguard_peak_bytes"] = speed_row["memguard_peak_bytes"]
    return row


def memory_configs(args) -> list[tuple[str, int, list[int]]]:
    """(shape, tokens, ks) from `--memory-configs` entries written shape:tokens:k1,k2."""
    configs = []
    for entry in args.memory_configs:
        shape, tokens, ks = entry.split(":")
        if shape not in SHAPES:
            raise SystemExit(f"unknown shape {shape!r} in --memory-configs (known: {sorted(SHAPES)})")
        configs.append((shape, int(tokens), [int(k) for k in ks.split(",")]))
    return configs


def bench_memory_cpu(args) -> list[dict]:
    """Peak RSS above the loaded model, one subprocess per configuration (RSS high-water is per process)."""
    rows = []
    for shape, n, ks in memory_configs(args):
        for k in ks:
            row: dict[str, Any] = {"n_tokens": n, "k": k, "shape": shape, "dtype": args.memory_dtype}
            for method in memory_methods(k):
                cmd = [sys.executable, __file__, "--_probe", method, "--shape", shape, "--device", args.device,
                       "--dtype", args.memory_dtype, "--lengths", str(n), "--ks", str(k)]
                t = time.perf_counter()
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                probe = json.loads(out.strip().splitlines()[-1])
                row[f"{method}_peak_bytes"] = probe["peak_above_model"]
                row[f"{method}_rss_bytes"] = probe["peak_rss"]
                row[f"{method}_p"] = probe["p"]
                print(f"  memory {shape} n={n} k={k} {method}: +{probe['peak_above_model'] / 2**20:.0f} MiB "
                      f"({time.perf_counter() - t:.0f} s)", flush=True)
            rows.append(row)
    return rows


def probe_memory(args) -> None:
    method, _, mode = args._probe.partition("_")
    tok, models = build_models(args.shape, args.device, dtype_of(args), None, {method})
    prompts = event_prompts(stretched_view(tok, args.lengths[0], trajectory_messages()), args.ks[0])
    warm = event_prompts(stretched_view(tok, 600, trajectory_messages()), args.ks[0])
    run = (lambda ps: naive_scores(models["naive"], tok, ps)) if method == "naive" else \
        (lambda ps: [s.p_harmful for s in make_memrm(models["memguard"], tok, prefix_mode=mode or "auto").score(ps)])
    run(warm)  # the same code path on a short event: lazy allocations happen before the reset
    gc.collect()
    reset = reset_rss_peak()
    before = rss_now_bytes() if reset else rss_peak_bytes()
    p = run(prompts)
    peak = rss_peak_bytes()
    print(json.dumps({"peak_above_model": peak - before, "peak_rss": peak, "hwm_reset": reset, "p": p}))


def bench_guard_overhead(args, tok, models, pool) -> dict:
    """Guard.review wall time minus the model's forward time, at 8K tokens, cold caches."""
    from memguard import CompactionEvent, Guard, JSONLSink, ObservationMasking

    model = models["memguard"]
    view = stretched_view(tok, 8192, pool)
    forward = {"t": 0.0, "start": 0.0}
    def started(*_: Any) -> None:
        forward["start"] = time.perf_counter()

    def finished(*_: Any) -> None:
        sync(args.device)
        forward["t"] += time.perf_counter() - forward["start"]

    pre = model.register_forward_pre_hook(started)
    post = model.register_forward_hook(finished)

    def chars(messages) -> int:
        return sum(len(str(m.get("content") if isinstance(m, dict) else m.content)) for m in messages)

    full_chars = chars(view)

    def policy(messages):  # the agent: instant, a different next action on the compacted context
        full = chars(messages) == full_chars
        cmd = "python reproduce.py" if full else "ls -la"
        return {"role": "assistant", "content": f"```bash\n{cmd}\n```"}

    walls, forwards = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats + 1):
            guard = Guard(make_memrm(model, tok), band=None,
                          sinks=[JSONLSink(Path(tmp) / "audit.jsonl")])
            event = CompactionEvent(before=view, candidate=ObservationMasking(keep_last=2)(view),
                                    strategy="observation_masking")
            forward["t"] = 0.0
            t = time.perf_counter()
            decision = guard.review(event, policy)
            walls.append(time.perf_counter() - t)
            forwards.append(forward["t"])
            guard.close()
            assert decision.candidates[0].p_harmful is not None, decision.reasons
    pre.remove()
    post.remove()
    walls, forwards = walls[1:], forwards[1:]  # the first review warms up
    overheads = [w - f for w, f in zip(walls, forwards)]
    i = min(range(len(walls)), key=lambda j: walls[j])
    result = {"n_tokens": 8192, "review_s": walls[i], "forward_s": forwards[i], "overhead_s": overheads[i],
              "overhead_median_s": statistics.median(overheads), "overhead_fraction": overheads[i] / forwards[i]}
    print(f"  guard overhead at 8K: {result['overhead_s'] * 1e3:.1f} ms of {result['review_s']:.3f} s", flush=True)
    return result


def bench_audit_latency(args, tok, models, pool, calls: int) -> dict:
    """review() latency on the caller's path in audit mode (scoring happens on the audit thread)."""
    from memguard import CompactionEvent, Guard, ObservationMasking

    view = stretched_view(tok, 8192, pool)
    scorer = make_memrm(models["memguard"], tok)
    guard = Guard(scorer, mode="audit", audit_queue_size=2)
    recorded = {"role": "assistant", "content": "```bash\npython reproduce.py\n```"}
    proposed = {"role": "assistant", "content": "```bash\nls -la\n```"}
    candidate = ObservationMasking(keep_last=2)(view)
    latencies = []
    for i in range(calls):
        event = CompactionEvent(before=view, candidate=candidate, step=i,
                                recorded_response=recorded, proposed_response=proposed)
        t = time.perf_counter()
        guard.review(event)
        latencies.append(time.perf_counter() - t)
        time.sleep(0.002)  # an agent does other work between compactions
    guard.close()
    latencies.sort()
    result = {"calls": calls, "p50_ms": 1e3 * latencies[len(latencies) // 2],
              "p99_ms": 1e3 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
              "max_ms": 1e3 * latencies[-1], "dropped": guard.audit_dropped}
    print(f"  audit latency: p50 {result['p50_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms", flush=True)
    return result


# ------------------------------------------------------------------------------ GPU report


def model_flops(shape: dict, n: int, k: int, shared: int) -> float:
    """Forward FLOPs of memguard's work: one prefill of `shared` tokens + k suffixes to n (causal attention)."""
    h, inter, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    q, kv = shape["num_attention_heads"] * shape["head_dim"], shape["num_key_value_heads"] * shape["head_dim"]
    per_token = 2 * layers * (h * (2 * q + 2 * kv) + 3 * h * inter)

    def attention(start: int, end: int) -> float:  # 2 matmuls x 2 FLOP per MAC over the visible keys
        return 4 * layers * q * (end * (end + 1) - start * (start + 1)) / 2

    total = per_token * shared + attention(0, shared)
    total += k * (per_token * (n - shared) + attention(shared, n))
    return total + k * 2 * h * shape["vocab_size"]


def gpu_report(args, tok, models, pool) -> list[dict]:
    """memguard alone on the GPU: k > 1 in both prefix modes (stream, cache), checked against each other."""
    from memguard.scoring.prefix import plan_prefix_groups

    rows = []
    name = torch.cuda.get_device_name()
    peak = next((v for key, v in PEAK_BF16_FLOPS.items() if key in name), None)
    for n in args.lengths:
        view = stretched_view(tok, n, pool)
        for k in args.ks:
            prompts = event_prompts(view, k)
            seqs = [ids for ids, _ in make_memrm(models["memguard"], tok).fit_prompts(prompts)]
            groups = plan_prefix_groups(seqs, 256)
            shared = groups[0].prefix_len if len(groups) == 1 and k > 1 else 0
            tokens = len(seqs[0])
            flops = model_flops(SHAPES[args.shape], tokens, k, shared)
            ps: dict[str, list[float]] = {}
            for mode in MODES if k > 1 else ("stream",):
                score = lambda mode=mode, prompts=prompts: [
                    s.p_harmful for s in make_memrm(models["memguard"], tok, prefix_mode=mode).score(prompts)]
                score()  # warm-up (kernels, allocator)
                torch.cuda.empty_cache()
                base_mem = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                seconds, ps[mode] = timed(score, args.device, args.repeats)
                row = {"n_tokens": tokens, "k": k, "mode": mode if k > 1 else "", "latency_s": seconds,
                       "tokens_per_s": k * tokens / seconds, "peak_bytes": torch.cuda.max_memory_allocated(),
                       "peak_above_model_bytes": torch.cuda.max_memory_allocated() - base_mem, "flops": flops,
                       "mfu": flops / seconds / peak if peak else None, "p": ps[mode]}
                if mode == "cache":
                    row["max_abs_diff_p_stream_cache"] = max(abs(a - b) for a, b in zip(ps["stream"], ps["cache"]))
                rows.append(row)
                print(f"  gpu n={tokens} k={k} {row['mode']}: {seconds * 1e3:.1f} ms, {row['tokens_per_s']:.0f} tok/s, "
                      f"peak {row['peak_bytes'] / 2**30:.2f} GiB (+{row['peak_above_model_bytes'] / 2**30:.2f} above model), "
                      f"MFU {row['mfu'] or float('nan'):.1%}", flush=True)
    return rows


# ------------------------------------------------------------------------------ table


def verdict(value: float, target: float, *, at_most: bool) -> str:
    ok = value <= target if at_most else value >= target
    if ok:
        return "met"
    return f"missed by {value / target:.2f}x" if at_most else f"missed by {target / value:.2f}x"


def table(report: dict) -> str:
    lines = ["| section | config | naive | memguard | ratio | target | status |", "|---|---|---|---|---|---|---|"]
    for row in report.get("speed", []):
        if "speedup" not in row:
            continue
        target = "≥ 2.5x" if (row["k"], row["n_tokens"]) == (3, 4096) else ""
        status = verdict(row["speedup"], 2.5, at_most=False) if target else ""
        how = ", stream" if row["k"] > 1 else ""
        lines.append(f"| latency | {row['tokens']} tok, k={row['k']}{how} | {row['naive_s']:.3f} s | {row['memguard_s']:.3f} s | "
                     f"{row['speedup']:.2f}x faster | {target} | {status} |")
        if "memguard_cache_s" in row:
            lines.append(f"| latency | {row['tokens']} tok, k={row['k']}, cache | {row['naive_s']:.3f} s | {row['memguard_cache_s']:.3f} s | "
                         f"{row['naive_s'] / row['memguard_cache_s']:.2f}x faster; stream/cache {row['stream_vs_cache']:.2f} | | |")
    for row in report.get("cut", []):
        where = f"{row['n_tokens']} tok context, k=3, max_length {row['max_length']}"
        lines.append(f"| cut | {where}, exact | | {row['exact_s']:.3f} s ({row['exact_forward_tokens']} tok run) | "
                     f"{row['exact_s'] / row['one_s']:.2f}x one cut prefill | | |")
        lines.append(f"| cut | {where}, shared | | {row['shared_s']:.3f} s ({row['shared_forward_tokens']} tok run) | "
                     f"{row['shared_over_one']:.2f}x one cut prefill ({row['one_s']:.3f} s); {row['exact_over_shared']:.2f}x "
                     f"faster than exact; max abs dP vs exact {row['max_abs_diff_p']:.2e} | ≈ 1x one prefill | "
                     f"{verdict(row['shared_over_one'], 1.2, at_most=True)} |")
    for row in report.get("memory", []):
        where = f"{row['n_tokens']} tok, k={row['k']}, {row.get('shape', '')} {row.get('dtype', '')}"
        for method in memory_methods(row["k"])[1:]:
            ratio = row[f"{method}_peak_bytes"] / max(1, row["naive_peak_bytes"])
            mode = method.partition("_")[2]
            lines.append(f"| peak memory above model | {where}{', ' + mode if mode else ''} | "
                         f"{row['naive_peak_bytes'] / 2**20:.0f} MiB | {row[f'{method}_peak_bytes'] / 2**20:.0f} MiB | "
                         f"{ratio:.3f} of naive | ≤ 0.2 | {verdict(ratio, 0.2, at_most=True)} |")
    if "guard" in report:
        g = report["guard"]
        lines.append(f"| guard overhead outside forward | 8K tok, k=1 | | {g['overhead_s'] * 1e3:.1f} ms of {g['forward_s']:.3f} s forward | "
                     f"{g['overhead_fraction']:.2%} | ≤ 2% | {verdict(g['overhead_fraction'], 0.02, at_most=True)} |")
    if "audit" in report:
        a = report["audit"]
        lines.append(f"| audit mode, caller latency | 8K tok, {a['calls']} calls | | p50 {a['p50_ms']:.3f} ms, p99 {a['p99_ms']:.3f} ms | | "
                     f"p99 ≤ 1 ms | {verdict(a['p99_ms'], 1.0, at_most=True)} |")
    for row in report.get("gpu", []):
        target = {8192: 0.08, 32768: 0.5}.get(round(row["n_tokens"] / 1024) * 1024)
        status = verdict(row["latency_s"], target, at_most=True) if target and report["dtype"] == "bfloat16" and not report.get("quant") else ""
        mode = f", {row['mode']}" if row.get("mode") else ""
        lines.append(f"| gpu {report.get('quant') or report['dtype']} | {row['n_tokens']} tok, k={row['k']}{mode} | | {row['latency_s'] * 1e3:.1f} ms, "
                     f"{row['tokens_per_s']:.0f} tok/s, {row['peak_bytes'] / 2**30:.2f} GiB (+{row['peak_above_model_bytes'] / 2**30:.2f}) | MFU {row['mfu'] or 0:.1%} | "
                     f"{f'≤ {target * 1e3:.0f} ms' if target else ''} | {status} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def dtype_of(args) -> torch.dtype:
    return getattr(torch, args.dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="mini")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--quant", choices=["nf4"], default=None)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--audit-calls", type=int, default=300)
    parser.add_argument("--cut-lengths", type=int, nargs="+", default=[40_960],
                        help="context lengths (tokens) of the exact-vs-shared cut section")
    parser.add_argument("--max-length", type=int, default=32_768, help="MemRM max_length in the cut section")
    parser.add_argument("--only", choices=["cut"], default=None, help="run only this section")
    parser.add_argument("--quick", action="store_true", help="one timed run per configuration")
    parser.add_argument("--gpu-report", action="store_true", help="memguard only: latency, tokens/s, peak memory, MFU")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    parser.add_argument("--memory-configs", nargs="+", default=DEFAULT_MEMORY_CONFIGS, metavar="SHAPE:TOKENS:KS",
                        help="CPU peak-memory probes, e.g. vocab:16384:1,3 deep:4096:3 (see the shapes above)")
    parser.add_argument("--memory-dtype", default="bfloat16", help="dtype of the CPU peak-memory probes")
    parser.add_argument("--_probe", choices=["naive", "memguard", "memguard_stream", "memguard_cache"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args._probe:
        return probe_memory(args)
    if args.quick:
        args.repeats = 1

    started = time.perf_counter()
    need = {"memguard"} if args.gpu_report or args.only else {"naive", "memguard"}
    tok, models = build_models(args.shape, args.device, dtype_of(args), args.quant, need)
    pool = trajectory_messages()
    report: dict[str, Any] = {"machine": machine(), "shape": args.shape, "device": args.device, "dtype": args.dtype,
                              "quant": args.quant, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"memguard scoring benchmark: {report['machine']}; shape {args.shape}, {args.dtype} {args.quant or ''}", flush=True)
    if args.gpu_report:
        report["gpu"] = gpu_report(args, tok, models, pool)
    elif args.only == "cut":
        report["cut"] = bench_cut(args, tok, models, pool)
    else:
        report["speed"] = bench_speed(args, tok, models, pool)
        if device_is_cuda(args):
            report["memory"] = [cuda_memory_row(r, args) for r in report["speed"] if r["n_tokens"] == max(args.lengths)]
        else:
            report["memory"] = bench_memory_cpu(args)
        report["guard"] = bench_guard_overhead(args, tok, models, pool)
        report["audit"] = bench_audit_latency(args, tok, models, pool, args.audit_calls)
        report["cut"] = bench_cut(args, tok, models, pool)
    report["wall_s"] = time.perf_counter() - started
    report["table"] = table(report)
    print()
    print(report["table"])
    print(f"\n{report['machine']}; wall {report['wall_s']:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"bench-{args.shape}-{args.device.split(':')[0]}-{args.quant or args.dtype}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    (args.out / name).write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
