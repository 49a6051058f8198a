"""The language model as a mutation operator (optional extra ``edgenas[llm]``: transformers, peft).

* ``codec``: architecture <-> the JSON a model reads and writes, for every registered space;
* ``prompt``: what the model reads (architecture, where its latency goes, objectives, history);
* ``decoding``: a token-prefix constraint so every proposed mutation is valid by construction;
* ``model``: locating and loading a model (a Hugging Face folder, a ``.gguf`` file, ``smollm2``);
* ``experience``: the proposal log (exact replay on resume) and the buffer of successful mutations;
* ``lora``: online LoRA fine-tuning on the successful mutations while the search runs;
* ``operator``: the mutation operator strategies call (``--llm-share``).

Only ``codec`` and ``prompt`` import nothing heavy; the rest import torch/transformers/peft lazily.
"""
