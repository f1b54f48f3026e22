"""``redblue compress CONFIG --teacher MODEL``: a smaller model from a trained one, by pruning
or distillation, trained on through the normal loop and measured against its teacher."""
