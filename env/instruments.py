"""Former home of the contract terms; kept so existing imports keep working.

``Instrument`` is :class:`env.contracts.ContractSpec` and ``INSTRUMENTS`` its table; new
code should use :func:`env.contracts.resolve_contract`.
"""

from __future__ import annotations

from env.contracts import CONTRACTS, ContractSpec, UnknownContractError, resolve_contract

Instrument = ContractSpec
INSTRUMENTS: dict[str, ContractSpec] = CONTRACTS
DEFAULT_INSTRUMENT = CONTRACTS["NQ"]


def get_instrument(symbol: str) -> ContractSpec:
    """Look up a contract by root symbol, or by a NinjaTrader name like ``"NQ 12-25"``.

    Raises:
        KeyError: naming the symbol, the known ones and how to supply a spec.
    """
    try:
        return resolve_contract(symbol)
    except UnknownContractError as exc:
        raise KeyError(str(exc)) from None
