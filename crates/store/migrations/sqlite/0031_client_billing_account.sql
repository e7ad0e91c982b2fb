-- The account an operator set to pay for the runs of the `owner`-billed agents created or last
-- changed through a white-label client (reference 000: the SaaS absorbs its customers' credit
-- costs). NULL: none; `owner` billing then falls back as before. It grants that account nothing.
ALTER TABLE clients ADD COLUMN billing_account_id TEXT;
