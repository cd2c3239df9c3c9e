"""Beam search constrained to the IDs a version issued, for Hugging Face transformers.

A model is trained on a version's tokens (``registry export --style tokens --vocab``, the
vocabulary added to its tokenizer); at generation time :func:`prefix_allowed_tokens_fn` (for
``generate(..., prefix_allowed_tokens_fn=...)``) or :func:`logits_processor` lets it emit,
token by token, only IDs of the version's :class:`registry.snapshot.Snapshot`: after each
prefix, only the codes that follow it among the issued IDs, and the end of the sequence only
after a whole ID (disambiguation token included; ``complete=False`` allows any issued prefix
to end it too).

The ID being generated is the run of the version's tokens at the end of the sequence, from
its last first-level token: a prompt should end with another token (a separator, a word)
than a whole ID. torch and transformers are imported here only, by the functions that need
them; nothing that resolves or looks up imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .ids import vocabulary

if TYPE_CHECKING:
    from .snapshot import Snapshot


class IdConstraint:
    """Which tokens may come next, given the tokens so far (see the module's docstring)."""

    def __init__(self, snapshot: Snapshot, tokenizer: Any, *, complete: bool = True,
                 eos_token_id: int | None = None):
        self.snapshot, self.complete = snapshot, complete
        self.levels = snapshot.space.levels
        words = vocabulary(snapshot.space.sizes, snapshot.version.max_disambiguation)
        token_ids = tokenizer.convert_tokens_to_ids(words)
        unknown = getattr(tokenizer, "unk_token_id", None)
        missing = [w for w, t in zip(words, token_ids, strict=True) if t is None or t == unknown]
        if missing:
            raise InputError(f"the tokenizer lacks {len(missing)} of the version's tokens "
                             f"(for example {missing[0]}): add the version's vocabulary to it "
                             "(tokenizer.add_tokens, from registry export --vocab)",
                             param="tokenizer")
        eos = eos_token_id if eos_token_id is not None else (
            tokenizer.eos_token_id if tokenizer.eos_token_id is not None
            else tokenizer.sep_token_id)
        if eos is None:
            raise InputError("give the token that ends a sequence: the tokenizer has none",
                             param="eos_token_id")
        self.eos = int(eos)
        # per position of an ID (levels, then the disambiguation number): value -> token id
        sizes = [*snapshot.space.sizes, snapshot.version.max_disambiguation + 1]
        self.by_position: list[list[int]] = []
        self.meaning: dict[int, tuple[int, int]] = {}  # token id -> (position, value)
        at = 0
        for position, size in enumerate(sizes):
            ids = [int(t) for t in token_ids[at:at + size]]
            self.by_position.append(ids)
            self.meaning.update((t, (position, v)) for v, t in enumerate(ids))
            at += size

    def prefix(self, tokens: Sequence[int]) -> list[int] | None:
        """The values of the ID being generated at the end of ``tokens`` (an empty list when
        none is begun); None when the tokens there are not the start of one (out of order)."""
        run: list[tuple[int, int]] = []
        for t in reversed(tokens):
            meaning = self.meaning.get(int(t))
            if meaning is None:
                break
            run.append(meaning)
            if meaning[0] == 0:
                break
        run.reverse()
        if run and run[0][0] != 0:
            return None
        if [p for p, _ in run] != list(range(len(run))):
            return None
        return [v for _, v in run]

    def allowed(self, tokens: Sequence[int]) -> list[int]:
        """The token ids that may follow ``tokens``."""
        values = self.prefix(tokens)
        if values is None or len(values) == self.levels + 1:
            return [self.eos]  # out of order, or a whole ID: the sequence ends
        nxt = self.by_position[len(values)]
        out = [nxt[v] for v in self.snapshot.allowed_next(values)]
        if values and not self.complete:
            out.append(self.eos)
        return out or [self.eos]

    def __call__(self, batch_id: int, input_ids: Any) -> list[int]:
        return self.allowed(input_ids.tolist())


def prefix_allowed_tokens_fn(snapshot: Snapshot, tokenizer: Any, *, complete: bool = True,
                             eos_token_id: int | None = None
                             ) -> Callable[[int, Any], list[int]]:
    """For ``model.generate(..., prefix_allowed_tokens_fn=...)``: only IDs of ``snapshot``'s
    version (whole ones unless ``complete`` is False), spelled with the tokens of its
    vocabulary that ``tokenizer`` was given."""
    return IdConstraint(snapshot, tokenizer, complete=complete, eos_token_id=eos_token_id)


def logits_processor(snapshot: Snapshot, tokenizer: Any, *, complete: bool = True,
                     eos_token_id: int | None = None) -> Any:
    """The same constraint as a transformers ``LogitsProcessor`` (for
    ``generate(..., logits_processor=LogitsProcessorList([...]))``): every score but the
    allowed tokens' becomes -inf."""
    import torch
    from transformers import LogitsProcessor

    constraint = IdConstraint(snapshot, tokenizer, complete=complete,
                              eos_token_id=eos_token_id)

    class IdLogitsProcessor(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor,
                     scores: torch.FloatTensor) -> torch.FloatTensor:
            mask = torch.full_like(scores, float("-inf"))
            for row, tokens in enumerate(input_ids.tolist()):
                mask[row, constraint.allowed(tokens)] = 0.0
            return scores + mask

    return IdLogitsProcessor()
