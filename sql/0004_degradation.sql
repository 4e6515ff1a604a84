-- Degradation profiles switched on per app (seed section 6): the profile's
-- overrides come from the app's served config (degradation_profiles); this
-- says which one an operator switched on, when, by whom and why. Every
-- switch is also an audit record. profile NULL: switched off.
CREATE TABLE IF NOT EXISTS degradation_switches (
    app_id       text PRIMARY KEY REFERENCES apps (app_id),
    profile      text,
    reason       text NOT NULL,
    switched_by  text NOT NULL,
    switched_at  timestamptz NOT NULL DEFAULT now()
);
