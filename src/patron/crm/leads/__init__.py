"""Leads: scoring (rules with decay, a trained naive Bayes model, overrides) and assignment
(teams' capacity and weights, rules, weighted round robin, the assignment log, rebalancing)."""
