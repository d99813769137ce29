"""The IoT-LM adapter on a small LLM: backbone, adapter, modalities, instruction data, training, answers (docs/llm.md)."""
