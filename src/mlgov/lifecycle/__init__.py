"""The lifecycle of model versions: stages, transition requests gated by risk-tier policies,
approvals under separation of duties, evidence records and the stage history."""
