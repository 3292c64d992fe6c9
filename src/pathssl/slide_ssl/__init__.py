"""Slide-level self-supervised learning on tile embeddings (Giga-SSL, Lazard et al. 2023):
a spatially aware slide encoder trained without labels, and slide-level evaluation."""
