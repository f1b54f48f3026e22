"""`redblue compare`: red-blue against standard training, paired by seed."""
