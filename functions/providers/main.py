"""The `providers` function: the catalog of LLM providers and models, and deployed agents."""

from __future__ import annotations

from shared.agents import agents, api_keys
from shared.llm import catalog
from shared.platform.http import RequestContext, Router, http_function

router = Router("providers")
_MISSING = {404: "Not Found"}


Listing = dict[str, catalog.ProviderConfig | agents.GofannonProvider]


@router.get("/providers", auth="user", summary="List Providers", response=Listing)
def list_providers(ctx: RequestContext) -> Listing:
    """Provider configurations keyed by slug; `gofannon`: the deployments the caller may call.

    Lists the providers the platform has configured and those the caller has
    an API key of their own for (`/users/me/api-keys`).
    """
    listing: Listing = dict(catalog.providers(api_keys.keyed_providers(ctx.user.user_id)))
    deployed = agents.gofannon_provider(ctx.user)
    if deployed is not None:
        listing["gofannon"] = deployed
    return listing


@router.get(
    "/providers/{provider}",
    auth="user",
    summary="Get Provider",
    response=catalog.ProviderConfig,
    responses=_MISSING,
)
def get_provider(ctx: RequestContext, provider: str) -> catalog.ProviderConfig:
    """One provider's configuration."""
    return catalog.provider(provider, api_keys.keyed_providers(ctx.user.user_id))


@router.get(
    "/providers/{provider}/models",
    auth="user",
    summary="List Models",
    response=list[str],
    responses=_MISSING,
)
def list_models(ctx: RequestContext, provider: str) -> list[str]:
    """The provider's model slugs."""
    return list(catalog.provider(provider, api_keys.keyed_providers(ctx.user.user_id)).models)


@router.get(
    "/providers/{provider}/models/{model}",
    auth="user",
    summary="Get Model",
    response=catalog.ModelConfig,
    responses=_MISSING,
)
def get_model(ctx: RequestContext, provider: str, model: str) -> catalog.ModelConfig:
    """One model's configuration."""
    return catalog.model(provider, model, api_keys.keyed_providers(ctx.user.user_id))


providers = http_function(router)
