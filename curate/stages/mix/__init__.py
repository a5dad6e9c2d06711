"""RegMix-style data-mixture search: propose mixtures, score them with proxies, regress, optimise, apply.

RegMix (Liu et al. 2024, "Data Mixture as Regression for Language Model Pre-training") trains many small
proxy models on random mixtures, fits a regression from mixture weights to a target loss, simulates a
huge number of mixtures through the regression and averages the best ones.
"""
