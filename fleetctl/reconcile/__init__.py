"""The spine: inputs -> desired -> observe -> plan -> program -> rollout."""
