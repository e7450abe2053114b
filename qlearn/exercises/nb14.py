"""Exercises of notebook 14 (shipping the model: GGUF blocks, the memory budget).

Each check takes what the notebook uses, computes the answer itself and compares. Answers may be any number
(int, float, numpy scalar, one-element tensor) or, for a decoded block, a tensor, numpy array or list of 32 values.
"""

from __future__ import annotations

import torch

from ..methods.ggml_quants import dequantize_blocks
from ..methods.mixed_precision import estimated_kl
from ._feedback import Feedback, Mistake, as_float64, check_number, describe, right, tensors_close, wrong

__all__ = ["check_decoded_q4_1", "check_uniform_estimate"]


def _block(block) -> torch.Tensor:
    if not isinstance(block, torch.Tensor) or block.dtype != torch.uint8 or block.shape != (20,):
        raise TypeError(f"block must be the 20 bytes (uint8 tensor) of one Q4_1 block, got {describe(block)}")
    return block


def check_decoded_q4_1(block: torch.Tensor, answer) -> Feedback:
    """Exercise 1: decode one Q4_1 block (d fp16, m fp16, 16 bytes of nibbles) into its 32 weights."""
    block = _block(block)
    expected = dequantize_blocks(block, "Q4_1", (32,))
    read = as_float64(answer)
    if read is None or read[0].numel() != 32:
        return wrong(f"give the 32 decoded weights (a tensor, array or list of 32 numbers), got {describe(answer)}")
    got = read[0].reshape(32)
    if tensors_close(got, expected):
        return right("Right: r = d * q + m, with q the low nibbles (weights 0-15) then the high nibbles (16-31). "
                     "Twenty bytes hold 32 weights: 5 bits each, d and m included.")
    q = torch.cat([block[4:].long() & 15, block[4:].long() >> 4]).double()  # (32,)
    d, m = (float(block[i:i + 2].view(torch.float16)) for i in (0, 2))
    interleaved = torch.stack([block[4:].long() & 15, block[4:].long() >> 4], dim=1).reshape(32).double()
    if tensors_close(got, d * interleaved + m):
        return wrong("The values are right but in the wrong order: byte j holds weight j in its low nibble and "
                     "weight j + 16 in its high nibble, not two neighbours.")
    if tensors_close(got, d * q):
        return wrong("You left out the min: Q4_1 is asymmetric, r = d * q + m (m is the fp16 after d).")
    if tensors_close(got, d * (q - 8)):
        return wrong("That is Q4_0's rule, d * (q - 8); Q4_1 keeps a min instead: r = d * q + m.")
    return wrong("Not yet. Bytes 0-1 are d (fp16), 2-3 are m (fp16), then 16 bytes: weight j = low nibble of byte "
                 "j, weight j + 16 = its high nibble; r = d * q + m.")


def check_uniform_estimate(sensitivity: dict, answer, bits: int = 5, measured_bits: int = 4) -> Feedback:
    """Exercise 2: the estimated total KL of putting every layer at `bits`, from the sensitivities at 4 bits."""
    if not isinstance(sensitivity, dict) or not sensitivity:
        raise TypeError("sensitivity must be the notebook's dict: layer name -> KL at 4 bits")
    total = sum(sensitivity.values())
    expected = sum(estimated_kl(s, measured_bits, bits) for s in sensitivity.values())
    mistakes = [Mistake(total, "that is the total at 4 bits; each extra bit quarters a layer's KL"),
                Mistake(total * 4.0 ** (bits - measured_bits), "the wrong way round: more bits means less KL"),
                Mistake(total / 2 ** (bits - measured_bits), "an extra bit halves the error, so it quarters the "
                        "squared error that KL follows: divide by 4 per bit, not 2")]
    return check_number(
        answer, expected, mistakes=[m for m in mistakes if m.value != expected], tolerance=1e-9 * expected,
        right_message=f"Right: {expected:.4g} nats. The allocator compares such estimates per byte to choose where "
                      "the budget goes.",
        wrong_message=lambda got: f"{got:.4g} is not it. Hint: KL_l({bits}) = KL_l({measured_bits}) * "
                                  f"4^({measured_bits} - {bits}), summed over the layers.",
        not_a_number="give the estimated total KL as a number")
