"""Workstation trainer (torch): the unified MoE model, pretraining, fine-tuning, distillation."""
