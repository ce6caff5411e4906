"""Real language-model activations: load a model, read text, cache activations, score splices.

Modules, one job each:
    text        read plain-text / markdown / reST / HTML files, folders or a HF dataset into documents
    models      the model registry (`minilm`, `smollm2`, `hf:<name>`) and site lookup
    windows     tokenise documents into fixed-length windows and mark the positions to cache
    hooks       capture a site's activations (stopping the forward pass there) and splice replacements
    cache       `cache_activations`: windows -> model -> ActivationStore, resumable
    downstream  `downstream_metrics`: CE loss / embedding cosine recovered by a reconstruction

Importing this package is cheap; torch and transformers load only when a model is used.
"""
