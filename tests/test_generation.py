"""Beam search constrained to a version's issued IDs, with a real (small, randomly
initialised) transformers model and the bundled MiniLM tokenizer: nothing is downloaded."""

from __future__ import annotations

import pytest

from .conftest import make_keys, make_vectors

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture
def setting(reg, tmp_path):
    """A frozen version, its vocabulary added to the bundled tokenizer, and a two-layer GPT-2
    of random weights over that tokenizer."""
    from registry.embed import resolve_model

    reg.add(make_keys(300), make_vectors(300))
    reg.train(codebook_size=[8, 4, 4], name="v")
    reg.freeze("v")
    vocab = tmp_path / "vocab.txt"
    reg.export("v", tmp_path / "ids.csv", style="tokens", vocab=vocab)
    tokenizer = transformers.AutoTokenizer.from_pretrained(resolve_model(None).path)
    tokenizer.add_tokens(vocab.read_text().split())
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=len(tokenizer), n_layer=2, n_head=2, n_embd=64, n_positions=64,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id))
    model.eval()
    return reg, reg.snapshot("v"), tokenizer, model


def _generate(model, tokenizer, **constraint) -> list[str]:
    prompts = ["recommend next:", "the user bought a text editor, then:", "games:"]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, num_beams=8, num_return_sequences=8, do_sample=False,
                             max_new_tokens=6, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.sep_token_id, **constraint)
    new = out[:, batch["input_ids"].shape[1]:]
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]


def test_constrained_beams_are_issued_ids_and_free_ones_are_not(setting):
    from registry.generation import logits_processor, prefix_allowed_tokens_fn

    reg, snap, tokenizer, model = setting
    beams = _generate(model, tokenizer,
                      prefix_allowed_tokens_fn=prefix_allowed_tokens_fn(snap, tokenizer))
    assert len(beams) == 24
    assert set(reg.resolve(beams, "v").statuses) == {"found"}, beams
    processed = _generate(model, tokenizer, logits_processor=transformers.LogitsProcessorList(
        [logits_processor(snap, tokenizer)]))
    assert set(reg.resolve(processed, "v").statuses) == {"found"}
    # the same search without the constraint: the random model emits other things too
    free = _generate(model, tokenizer)
    assert set(reg.resolve(free, "v").statuses) != {"found"}


def test_the_constraint_follows_the_issued_ids(setting):
    from registry.generation import IdConstraint

    reg, snap, tokenizer, _ = setting
    constraint = IdConstraint(snap, tokenizer)
    prompt = tokenizer("next:", add_special_tokens=False)["input_ids"]
    first = constraint.allowed(prompt)
    assert sorted(first) == sorted(constraint.by_position[0][c]
                                   for c in snap.allowed_next([]))
    record = reg.get(["item00003"], "v")[0]
    tokens = prompt + [constraint.by_position[i][c] for i, c in
                       enumerate([*record.codes, record.disambiguation])]
    # after each prefix, its issued next codes; after the whole ID, only the end
    for depth in range(4):
        assert [constraint.meaning[t][1] for t in constraint.allowed(tokens[:len(prompt) +
                                                                            depth])] == \
            snap.allowed_next([*record.codes, record.disambiguation][:depth])
    assert constraint.allowed(tokens) == [tokenizer.sep_token_id]
    # any issued prefix may end the sequence when asked for
    loose = IdConstraint(snap, tokenizer, complete=False)
    assert tokenizer.sep_token_id in loose.allowed(tokens[:len(prompt) + 2])
    assert tokenizer.sep_token_id not in constraint.allowed(tokens[:len(prompt) + 2])
    # a tokenizer without the vocabulary is refused, saying what to do
    bare = transformers.AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    with pytest.raises(Exception, match="add the version's vocabulary"):
        IdConstraint(snap, bare)
