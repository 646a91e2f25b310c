"""HTTP to Helfo: the KUHR Krav API client (`client`), tokens from Maskinporten and HelseID
(`auth`, DPoP proofs in `dpop`, HelseID's endpoints in `discovery`), the personal HelseID
login (`login`, its stored refresh token in `login_store`, its tokens in `login_tokens`),
HelseID's test token service (`testtoken`), signing keys (`keys`), JWE (`jwe`), the transport
and proxy rules (`transport`, `proxy`), which KUHR the settings point at (`target`) and Helfo's
open data API (`opendata`).
"""

__all__ = [
    "auth",
    "client",
    "discovery",
    "dpop",
    "identity",
    "jwe",
    "keys",
    "login",
    "login_store",
    "login_tokens",
    "opendata",
    "proxy",
    "target",
    "testtoken",
    "transport",
]
