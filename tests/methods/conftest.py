"""The method tests run small matmuls in loops: one thread, as the shared `one_thread` fixture sets; `tiny` is the
random Llama the KV-cache tests share."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM


@pytest.fixture(autouse=True, scope="module")
def _methods_one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def tiny():
    """A random Llama: vocab 100, hidden 64, 2 layers, 4 heads sharing 2 kv heads (head_dim 16)."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return LlamaForCausalLM(config).eval()
