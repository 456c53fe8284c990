"""CloudFront in front of the HTTP API (context ``cdn``, on by default).

The STAC and raster routes (``/stac*``, ``/raster*``) are cached by the ``Cache-Control`` the
apps set (``services/stacube_services/cache.py``: a job's tiles a year, other item tiles a day,
mosaic tiles five minutes, searches a minute, errors and writes never); the cache key holds the
whole query string and the credentials headers (``Authorization``, ``X-API-Key``), so no answer
reaches a caller it was not made for. Everything else (``/jobs``) passes through uncached. A
CloudFront function tells the apps the host the client used (``x-stacube-forwarded-host``), so
the links they build point at the distribution.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from constructs import Construct

from stacube_infra.config import StageConfig

#: Credentials headers: part of the cache key (and so forwarded to the apps).
CREDENTIAL_HEADERS = ("Authorization", "X-API-Key")
#: Paths whose GETs are cached.
CACHED_PATHS = ("/stac*", "/raster*")
_FORWARD_HOST = """function handler(event) {
    var request = event.request;
    request.headers['x-stacube-forwarded-host'] = {value: request.headers.host.value};
    return request;
}"""


class Cdn(Construct):
    """The distribution, its cache policy and the host-forwarding function."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, api_domain: str) -> None:
        super().__init__(scope, construct_id)
        origin = origins.HttpOrigin(api_domain, protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY)
        self.cache_policy = cloudfront.CachePolicy(
            self,
            "AppsCachePolicy",
            cache_policy_name=f"{config.prefix}-apps",
            comment="stacube STAC and raster answers, as long as their Cache-Control allows",
            min_ttl=Duration.seconds(0),
            default_ttl=Duration.seconds(0),
            max_ttl=Duration.days(365),
            query_string_behavior=cloudfront.CacheQueryStringBehavior.all(),
            header_behavior=cloudfront.CacheHeaderBehavior.allow_list(*CREDENTIAL_HEADERS),
            cookie_behavior=cloudfront.CacheCookieBehavior.none(),
            enable_accept_encoding_gzip=True,
            enable_accept_encoding_brotli=True,
        )
        self.forward_host = cloudfront.Function(
            self,
            "ForwardHost",
            code=cloudfront.FunctionCode.from_inline(_FORWARD_HOST),
            runtime=cloudfront.FunctionRuntime.JS_2_0,
            comment="The client's host, for the links the apps build",
        )
        functions = [cloudfront.FunctionAssociation(
            function=self.forward_host, event_type=cloudfront.FunctionEventType.VIEWER_REQUEST)]
        passthrough = cloudfront.BehaviorOptions(
            origin=origin,
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
            cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
            origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
            function_associations=functions,
        )
        cached = cloudfront.BehaviorOptions(
            origin=origin,
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
            cached_methods=cloudfront.CachedMethods.CACHE_GET_HEAD_OPTIONS,
            cache_policy=self.cache_policy,
            origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
            function_associations=functions,
            compress=True,
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"{config.prefix} APIs",
            default_behavior=passthrough,
            additional_behaviors={path: cached for path in CACHED_PATHS},
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
        )

    @property
    def url(self) -> str:
        """``https://<distribution domain>``."""
        return f"https://{self.distribution.distribution_domain_name}"
