"""OCPP Security Whitepaper: the vocabulary and recorder port (`events`), the state directory's secret files
(`files`), the manager of profiles, keys and the security log (`manager`), and certificates with
`cryptography` (`certificates`, loaded only when a certificate is handled)."""
