from pathlib import Path

import pytest

from zerosearch.config import ConfigError, TrainConfig, load_train_config, parse_overrides

REPO = Path(__file__).resolve().parents[1]


def test_defaults_follow_the_paper():
    cfg = TrainConfig()
    assert (cfg.algorithm, cfg.prompts_per_step, cfg.rollouts_per_prompt) == ("reinforce", 64, 5)
    assert (cfg.lr, cfg.kl_coef, cfg.warmup_ratio, cfg.topk, cfg.max_turn_tokens) == (1e-6, 0.001, 0.95, 5, 500)
    assert cfg.curriculum.base == 4.0


def test_overrides_nested_and_typed():
    cfg = load_train_config(None, ["lr=1e-5", "curriculum.end=0.75", "train_files=a.jsonl,b.parquet",
                                   "lora.enabled=true", "algorithm=grpo"])
    assert cfg.lr == 1e-5 and cfg.curriculum.end == 0.75 and cfg.lora.enabled
    assert cfg.train_files == ["a.jsonl", "b.parquet"]


def test_unknown_key_lists_close_matches():
    with pytest.raises(ConfigError, match="did you mean kl_coef"):
        load_train_config(None, ["kl_coeff=0.1"])
    with pytest.raises(ConfigError, match="curriculum.end"):
        load_train_config(None, ["curriculum.ends=0.5"])


def test_bad_values_say_what_to_fix():
    with pytest.raises(ConfigError, match="algorithm='a2c' is not one of reinforce, grpo, rloo, ppo"):
        load_train_config(None, ["algorithm=a2c"])
    with pytest.raises(ConfigError, match="rollouts_per_prompt >= 2"):
        load_train_config(None, ["algorithm=grpo", "rollouts_per_prompt=1"])
    with pytest.raises(ConfigError, match="base_url"):
        load_train_config(None, ["engine.simulator.backend=openai"])
    with pytest.raises(ConfigError, match="lr"):
        load_train_config(None, ["lr=fast"])
    with pytest.raises(ConfigError, match=r"kv_reuse='maybe' has the wrong type \(expected true/false\)"):
        load_train_config(None, ["kv_reuse=maybe"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["lr"])
    with pytest.raises(ConfigError, match="doc_format='markdown' is not one of zerosearch, search_r1"):
        load_train_config(None, ["doc_format=markdown"])
    assert load_train_config(None, []).doc_format == "zerosearch"  # the original ZeroSearch rendering


def test_group_baselines_and_dynamic_sampling_are_checked():
    """rloo, like grpo, compares the rollouts of one prompt; drop_uniform_groups needs a group baseline
    (under reinforce or ppo a group of equal rewards still has a gradient); the round bound is >= 1."""
    with pytest.raises(ConfigError, match=r"^the key=value overrides: algorithm=rloo compares each rollout with "
                                          r"the rest of a group: set rollouts_per_prompt >= 2"):
        load_train_config(None, ["algorithm=rloo", "rollouts_per_prompt=1"])
    for algorithm, why in [("reinforce", "its advantage is the reward itself"),
                           ("ppo", "the critic, not the group, sets the baseline")]:
        with pytest.raises(ConfigError, match=rf"drop_uniform_groups=true .* under algorithm={algorithm} such a "
                                              rf"group still has a gradient \({why}.*use algorithm=grpo or rloo"):
            load_train_config(None, [f"algorithm={algorithm}", "drop_uniform_groups=true"])
    with pytest.raises(ConfigError, match=r"max_sampling_rounds=0 must lie in \[1, inf\]"):
        load_train_config(None, ["algorithm=rloo", "drop_uniform_groups=true", "max_sampling_rounds=0"])
    cfg = load_train_config(None, ["algorithm=rloo", "drop_uniform_groups=true", "max_sampling_rounds=8"])
    assert (cfg.algorithm, cfg.drop_uniform_groups, cfg.max_sampling_rounds) == ("rloo", True, 8)
    cfg = load_train_config(None, ["algorithm=grpo", "grpo_scale_by_std=false", "drop_uniform_groups=true"])
    assert not cfg.grpo_scale_by_std and cfg.drop_uniform_groups
    defaults = TrainConfig()  # off by default, as in the paper (and so in configs/qwen2.5-*.yaml)
    assert (defaults.drop_uniform_groups, defaults.grpo_scale_by_std) == (False, True)
    for path in (REPO / "configs").glob("qwen2.5-*.yaml"):
        assert not load_train_config(path).drop_uniform_groups, path.name


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algorithm: reinforce\nmax_turn: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*did you mean max_turns"):
        load_train_config(bad)


def test_a_config_that_is_not_a_yaml_file_is_said_in_one_line(tmp_path):
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00model: x\n")
    with pytest.raises(ConfigError, match=r"binary\.yaml: not a UTF-8 text file \(byte 0\)"):
        load_train_config(tmp_path / "binary.yaml")
    with pytest.raises(ConfigError, match=r"is a directory; give a YAML config file"):
        load_train_config(tmp_path)


def test_a_key_given_twice_in_a_config_file_is_an_error(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("lr: 1.0e-6\ntotal_steps: 3\nlr: 5.0e-6\nengine:\n  kind: simulated\n")
    with pytest.raises(ConfigError, match=r"twice\.yaml: not valid YAML: .*key 'lr' is given twice \(lines 1 and 3\)"):
        load_train_config(twice)
    twice.write_text("engine:\n  kind: simulated\n  kind: real\n")
    with pytest.raises(ConfigError, match=r"key 'kind' is given twice \(lines 2 and 3\)"):
        load_train_config(twice)


def test_an_error_names_the_overrides_or_the_file_whichever_holds_it(tmp_path):
    """A typo on the command line is not blamed on the config file (the embedded default.yaml, when the
    user named none); a fault in the file is, even where an override is wrong too; an override may mend
    the file."""
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("algorithm: grpo\nrollouts_per_prompt: 2\n")
    bad.write_text("algorithm: grpo\nrollouts_per_prompt: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_train_config(good, ["lr=abc"])
    assert str(caught.value) == "the key=value overrides: lr='abc' has the wrong type (expected a number)"
    with pytest.raises(ConfigError, match=r"^the key=value overrides: algorithm=grpo normalises"):
        load_train_config(good, ["rollouts_per_prompt=1"])
    with pytest.raises(ConfigError, match=rf"^{bad}: algorithm=grpo normalises"):
        load_train_config(bad)
    with pytest.raises(ConfigError, match=rf"^{bad} with the key=value overrides: lr='abc'"):
        load_train_config(bad, ["lr=abc"])
    assert load_train_config(bad, ["rollouts_per_prompt=4"]).rollouts_per_prompt == 4


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_train_config(path)
    assert cfg.total_steps >= 1


def test_engine_kind_real_needs_a_spec_and_only_real_takes_one():
    with pytest.raises(ConfigError, match="engine.kind=real needs engine.spec"):
        load_train_config(None, ["engine.kind=real"])
    with pytest.raises(ConfigError, match="applies to engine.kind=real"):
        load_train_config(None, ["engine.spec=example"])
    with pytest.raises(ConfigError, match="use engine.kind=simulated"):
        load_train_config(None, ["engine.kind=real", "engine.spec=simulated:zerosearch:tiny"])
    with pytest.raises(ConfigError, match="engine.kind"):
        load_train_config(None, ["engine.kind=google"])
    assert load_train_config(None, ["engine.kind=real", "engine.spec=example"]).engine.spec == "example"


def test_yaml_1_1_booleans_stay_words_where_a_word_is_expected(tmp_path):
    # PyYAML reads off/on/yes/no as booleans (YAML 1.1): autocast=off, a documented choice, was refused
    cfg = load_train_config(None, ["autocast=off", "kv_cache=static", "run_name=2024", "tensorboard=yes"])
    assert (cfg.autocast, cfg.kv_cache, cfg.run_name, cfg.tensorboard) == ("off", "static", "2024", True)
    # nor are base-60 numbers or digit groups numbers; plain decimals and exponents are
    cfg = load_train_config(None, ["run_name=12:30", "output_dir=1_000", "lr=1e-6", "kl_coef=.5", "seed=7"])
    assert (cfg.run_name, cfg.output_dir, cfg.lr, cfg.kl_coef, cfg.seed) == ("12:30", "1_000", 1e-6, 0.5, 7)
    path = tmp_path / "c.yaml"
    path.write_text("autocast: off\nreport: no\nwandb: on\nrun_name: 7\n")
    cfg = load_train_config(path)
    assert (cfg.autocast, cfg.report, cfg.wandb, cfg.run_name) == ("off", False, True, "7")
    assert load_train_config(None, ["report=false", "wandb=True"]).wandb is True
    with pytest.raises(ConfigError, match="autocast='maybe' is not one of auto, bf16, off"):
        load_train_config(None, ["autocast=maybe"])
    # a saved config reads back to the same settings
    from zerosearch.config import save_config

    save_config(cfg, tmp_path / "saved.yaml")
    assert load_train_config(tmp_path / "saved.yaml") == cfg


@pytest.mark.parametrize("override", ["lr=nan", "kl_coef=inf", "temperature=nan", "engine.simulator.timeout=nan",
                                      "engine.simulator.max_batch_size=0", "engine.simulator.temperature=-1",
                                      "engine.simulator.max_concurrency=0", "engine.simulator.max_retries=-1",
                                      "engine.simulator.timeout=0", "clip_ratio=-1", "grad_clip=0"])
def test_numbers_that_would_fail_or_mislead_later_are_refused_when_the_config_loads(override):
    """nan passes every range check and inf none meaningfully; these used to fail as tracebacks inside
    torch or the simulator, or train on silently (kl_coef=inf gave a null grad_norm)."""
    with pytest.raises(ConfigError, match=rf"^the key=value overrides: {override.split('=')[0]}"):
        load_train_config(None, [override])


@pytest.mark.parametrize("override, message", [
    ("lora.r=0", r"lora\.r=0 must lie in \[1, inf\]"),
    ("lora.alpha=0", r"lora\.alpha=0 must be > 0: .* zeroes every LoRA gradient"),
    ("lora.alpha=-16", r"lora\.alpha=-16 must be > 0: .* reverses the update"),
    ("lora.dropout=1", r"lora\.dropout=1\.0 must lie in \[0, 1\)"),
    ("lora.dropout=-0.1", r"lora\.dropout=-0\.1 must lie in \[0, 1\)"),
    ("lora.dropout=0.1", r"lora\.dropout=0\.1: zerosearch trains with every dropout off .* set lora\.dropout=0"),
    ("lora.target_modules=[]", r"lora\.target_modules=\[\] must name the modules to adapt"),
    ("lora.target_modules=", r"lora\.target_modules='' must name the modules to adapt"),
    ("lora.target_modules=[q_proj,'']", r"lora\.target_modules=\['q_proj', ''\] must name"),
    ("warmup.lora_r=0", r"warmup\.lora_r=0 must lie in \[1, inf\]"),
    ("warmup.lora_alpha=0", r"warmup\.lora_alpha=0 must be > 0"),
])
def test_every_lora_setting_is_range_checked_when_the_config_loads(override, message):
    """lora.alpha=0 scales the adapter by alpha/r = 0: every gradient was 0 for a whole run, without a word.
    Each LoRA key is checked whether or not LoRA is enabled (a wrong value is wrong either way)."""
    with pytest.raises(ConfigError, match=rf"^the key=value overrides: {message}"):
        load_train_config(None, [override])
    load_train_config(None, ["lora.enabled=true", "lora.r=8", "lora.alpha=8", "lora.target_modules=[q_proj,v_proj]",
                             "warmup.lora_r=4", "warmup.lora_alpha=1"])  # the good values still load


def test_the_sft_settings_check_lora_alpha_too():
    """Simulator tuning's train() and the warm-up build SFTSettings; alpha 0 there trained nothing as well."""
    from zerosearch.sft import SFTSettings

    with pytest.raises(ValueError, match=r"lora_alpha=0 must be > 0"):
        SFTSettings(lora=True, lora_alpha=0)
    with pytest.raises(ValueError, match=r"lora_r=0 must lie in \[1, inf\]"):
        SFTSettings(lora_r=0)
