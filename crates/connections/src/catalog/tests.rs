use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(operator: Option<&str>, config: Option<&str>) -> Result<Catalog, CatalogError> {
    let table = config.map(|c| c.parse::<toml::Table>().unwrap());
    let sources = CatalogSources {
        operator_file: operator.map(|t| ("/etc/bk/providers.toml", t)),
        config: table.as_ref().map(|providers| ConfigLayer { name: "bridgekeeper.toml", providers }),
        allow_http_loopback: false,
    };
    Catalog::load(&sources, &no_env)
}

fn oauth2(p: &Provider) -> &OAuth2 {
    match &p.auth {
        AuthKind::OAuth2(o) => o,
        other => panic!("{} is {}", p.id, other.name()),
    }
}

fn error(operator: Option<&str>, config: Option<&str>) -> CatalogError {
    load(operator, config).expect_err("the catalog should be refused")
}

#[test]
fn shipped_catalog_has_the_five_providers_with_no_credentials() {
    let c = load(None, None).unwrap();
    let ids: Vec<&str> = c.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["atlassian", "github", "google", "notion", "slack"]);
    for p in c.iter() {
        let o = oauth2(p);
        assert!(o.client.client_id.is_none() && o.client.client_secret.is_none());
        assert_eq!(p.missing_setting(), Some(format!("connections.providers.{}.oauth2.client_id", p.id).as_str()));
        assert_eq!(o.token_url.scheme(), "https");
    }
    let google = oauth2(c.get("google").unwrap());
    assert_eq!(google.authorize_params.get("access_type").map(String::as_str), Some("offline"));
    assert!(google.pkce);
    let slack = oauth2(c.get("slack").unwrap());
    assert_eq!((slack.scope_separator.as_str(), slack.scope_param.as_str(), slack.pkce), (",", "user_scope", false));
    assert_eq!(slack.token_path.as_deref(), Some("authed_user"));
    let notion = oauth2(c.get("notion").unwrap());
    assert_eq!((notion.token_auth, notion.token_body), (TokenAuth::Basic, TokenBody::Json));
    assert_eq!(
        oauth2(c.get("atlassian").unwrap()).authorize_params.get("audience").map(String::as_str),
        Some("api.atlassian.com")
    );
    let github = c.get("github").unwrap();
    assert!(
        matches!(&github.tools, ToolSource::UpstreamMcp { url } if url.host_str() == Some("api.githubcopilot.com"))
    );
    assert!(
        github.read_tools.iter().any(|t| t == "get_issue") && github.write_tools.iter().any(|t| t == "create_issue")
    );
}

#[test]
fn operator_file_adds_overrides_and_hides_providers() {
    let c = load(
        Some(
            r#"
            [acme]
            name = "Acme CRM"
            auth = "api_key"
            api_key = { label = "Acme API token", help = "Settings → API" }
            tools = { kind = "http", definitions = [{ name = "list_deals", method = "GET", url = "https://api.acme.example/deals" }] }
            read_tools = ["list_deals"]

            [google.oauth2]
            scopes = ["openid", "https://www.googleapis.com/auth/gmail.readonly"]

            [slack]
            enabled = false
            "#,
        ),
        None,
    )
    .unwrap();
    assert!(c.get("slack").is_none());
    let acme = c.get("acme").unwrap();
    assert!(matches!(&acme.auth, AuthKind::ApiKey(f) if f.label == "Acme API token"));
    assert!(
        matches!(&acme.tools, ToolSource::Http { tools } if tools[0].name == "list_deals" && tools[0].method == "GET")
    );
    assert_eq!(acme.missing_setting(), None);
    let google = oauth2(c.get("google").unwrap());
    assert_eq!(google.scopes, ["openid", "https://www.googleapis.com/auth/gmail.readonly"]);
    // Untouched fields of an overridden provider stay as shipped.
    assert_eq!(google.token_url.as_str(), "https://oauth2.googleapis.com/token");
}

#[test]
fn configuration_supplies_client_credentials_directly_or_by_environment() {
    let config = r#"
        [google.oauth2]
        client_id = "123.apps.googleusercontent.com"
        client_secret = "s3cret"
        [github.oauth2]
        client_id_env = "GH_ID"
        client_secret_env = "GH_SECRET"
        [notion.oauth2]
        client_id = "n"
        client_secret_env = "UNSET_VAR"
    "#;
    let table = config.parse::<toml::Table>().unwrap();
    let sources = CatalogSources {
        operator_file: None,
        config: Some(ConfigLayer { name: "bridgekeeper.toml", providers: &table }),
        allow_http_loopback: false,
    };
    let env = |k: &str| match k {
        "GH_ID" => Some("Iv1.abc".to_owned()),
        "GH_SECRET" => Some("gh-secret".to_owned()),
        _ => None,
    };
    let c = Catalog::load(&sources, &env).unwrap();
    let google = oauth2(c.get("google").unwrap());
    assert_eq!(google.client.client_id.as_deref(), Some("123.apps.googleusercontent.com"));
    assert_eq!(google.client.client_secret.as_ref().map(ProviderSecret::expose), Some("s3cret"));
    assert_eq!(c.get("google").unwrap().missing_setting(), None);
    let github = oauth2(c.get("github").unwrap());
    assert_eq!(github.client.client_id.as_deref(), Some("Iv1.abc"));
    assert_eq!(github.client.client_secret.as_ref().map(ProviderSecret::expose), Some("gh-secret"));
    assert_eq!(
        c.get("notion").unwrap().missing_setting(),
        Some("the environment variable UNSET_VAR (named by connections.providers.notion.oauth2.client_secret_env)")
    );
}

#[test]
fn secrets_never_print() {
    let table =
        "[google.oauth2]\nclient_id = \"x\"\nclient_secret = \"top-secret-value\"".parse::<toml::Table>().unwrap();
    let sources = CatalogSources {
        operator_file: None,
        config: Some(ConfigLayer { name: "c", providers: &table }),
        allow_http_loopback: false,
    };
    let c = Catalog::load(&sources, &no_env).unwrap();
    let printed = format!("{c:?}");
    assert!(!printed.contains("top-secret-value"), "{printed}");
    assert!(printed.contains("ProviderSecret(…)"));
}

#[test]
fn invalid_toml_names_the_file() {
    let e = error(Some("[acme\nname = 1"), None);
    assert_eq!((e.file.as_str(), e.provider.as_str()), ("/etc/bk/providers.toml", ""));
    assert!(e.to_string().starts_with("provider catalog /etc/bk/providers.toml: not valid TOML"), "{e}");
}

#[test]
fn unknown_field_names_file_provider_and_field() {
    let e = error(None, Some("[google.oauth2]\nclient_secre = \"x\""));
    assert_eq!(
        (e.file.as_str(), e.provider.as_str(), e.field.as_str()),
        ("bridgekeeper.toml", "google", "oauth2.client_secre")
    );
    assert!(e.to_string().contains("provider `google`, field `oauth2.client_secre`"), "{e}");
}

#[test]
fn wrong_type_names_the_field() {
    let e = error(Some("[google.oauth2]\npkce = \"yes\""), None);
    assert_eq!((e.provider.as_str(), e.field.as_str()), ("google", "oauth2.pkce"));
    let e = error(Some("[acme]\nname = \"A\"\nauth = \"password\""), None);
    assert_eq!((e.provider.as_str(), e.field.as_str()), ("acme", "auth"));
    assert!(e.message.contains("unknown variant"), "{e}");
}

#[test]
fn a_provider_must_be_a_table_with_a_valid_id() {
    let e = error(Some("acme = 3"), None);
    assert_eq!((e.provider.as_str(), e.field.as_str()), ("acme", ""));
    let e = error(Some("[\"Bad Id\"]\nname = \"x\""), None);
    assert_eq!(e.provider, "Bad Id");
    assert!(e.message.contains("a provider id"), "{e}");
}

#[test]
fn missing_required_fields_are_named() {
    let e = error(Some("[acme]\nauth = \"api_key\""), None);
    assert_eq!((e.provider.as_str(), e.field.as_str()), ("acme", "name"));
    let e = error(Some("[acme]\nname = \"Acme\""), None);
    assert_eq!(e.field, "auth");
    let e = error(Some("[acme]\nname = \"Acme\"\nauth = \"oauth2\""), None);
    assert_eq!(e.field, "oauth2");
    let e = error(
        Some("[acme]\nname = \"Acme\"\nauth = \"oauth2\"\noauth2 = { authorize_url = \"https://a.example/auth\" }"),
        None,
    );
    assert_eq!((e.field.as_str(), e.message.as_str()), ("oauth2.token_url", "missing"));
    let e = error(Some("[acme]\nname = \"Acme\"\nauth = \"mcp\"\nmcp = {}"), None);
    assert_eq!(e.field, "mcp.url");
    let e = error(Some("[acme]\nname = \"Acme\"\nauth = \"token_exchange\"\ntoken_exchange = {}"), None);
    assert_eq!(e.field, "token_exchange.verify_url");
    let e = error(Some("[acme]\nname = \"Acme\"\nauth = \"api_key\"\ntools = { kind = \"mcp\" }"), None);
    assert_eq!(e.field, "tools.url");
}

#[test]
fn urls_must_be_https() {
    let e = error(Some("[google.oauth2]\ntoken_url = \"http://oauth2.example/token\""), None);
    assert_eq!(
        (e.file.as_str(), e.provider.as_str(), e.field.as_str()),
        ("/etc/bk/providers.toml", "google", "oauth2.token_url")
    );
    let e = error(Some("[google]\nlogo_url = \"not a url\""), None);
    assert_eq!(e.field, "logo_url");
    let e = error(Some("[google.oauth2]\ntoken_url = \"http://127.0.0.1:9000/token\""), None);
    assert_eq!(e.field, "oauth2.token_url");
    let e = error(Some("[google.oauth2]\nissuer = \"http://accounts.example\""), None);
    assert_eq!(e.field, "oauth2.issuer");
    let c = load(Some("[google.oauth2]\nissuer = \"https://accounts.example\""), None).unwrap();
    assert_eq!(oauth2(c.get("google").unwrap()).issuer.as_deref(), Some("https://accounts.example"), "kept as written");
    let c = load(Some("[google.oauth2]\ntoken_url = \"https://127.0.0.1:9000/token\""), None).unwrap();
    assert_eq!(oauth2(c.get("google").unwrap()).token_url.port(), Some(9000));
}

#[test]
fn sections_of_another_kind_and_overlapping_tools_are_refused() {
    let e = error(Some("[google]\napi_key = { label = \"k\" }"), None);
    assert_eq!((e.provider.as_str(), e.field.as_str()), ("google", "api_key"));
    let e = error(Some("[github]\nread_tools = [\"create_issue\"]"), None);
    assert_eq!(e.field, "read_tools");
    assert!(e.message.contains("create_issue"));
    let e = error(
        Some("[acme]\nname = \"A\"\nauth = \"api_key\"\ntools = { kind = \"http\", url = \"https://a.example\" }"),
        None,
    );
    assert_eq!(e.field, "tools.url");
    let e = error(
        Some(
            "[acme]\nname = \"A\"\nauth = \"api_key\"\ntools = { kind = \"mcp\", url = \"https://a.example\", definitions = [] }",
        ),
        None,
    );
    assert_eq!(e.field, "tools.definitions");
}

#[test]
fn the_flow_own_authorize_parameters_cannot_be_overridden() {
    let e = error(Some("[google.oauth2]\nauthorize_params = { redirect_uri = \"https://evil.example\" }"), None);
    assert_eq!(e.field, "oauth2.authorize_params.redirect_uri");
    let e = error(Some("[slack.oauth2]\nauthorize_params = { user_scope = \"admin\" }"), None);
    assert_eq!(e.field, "oauth2.authorize_params.user_scope");
}

#[test]
fn a_secret_given_twice_is_refused() {
    let e = error(None, Some("[google.oauth2]\nclient_secret = \"a\"\nclient_secret_env = \"B\""));
    assert_eq!((e.provider.as_str(), e.field.as_str()), ("google", "oauth2.client_secret_env"));
}

#[test]
fn mcp_and_token_exchange_providers() {
    let c = load(
        Some(
            r#"
            [linear]
            name = "Linear"
            auth = "mcp"
            mcp = { url = "https://mcp.linear.app/mcp" }
            [tenant-api]
            name = "Our API"
            auth = "token_exchange"
            token_exchange = { verify_url = "https://api.tenant.example/bridge/verify", admin_token_env = "TENANT_ADMIN" }
            "#,
        ),
        None,
    )
    .unwrap();
    let linear = c.get("linear").unwrap();
    assert!(matches!(&linear.tools, ToolSource::UpstreamMcp { url } if url.as_str() == "https://mcp.linear.app/mcp"));
    assert_eq!(linear.missing_setting(), None, "an MCP server may identify us by CIMD or DCR");
    assert_eq!(
        c.get("tenant-api").unwrap().missing_setting(),
        Some(
            "the environment variable TENANT_ADMIN (named by connections.providers.tenant-api.token_exchange.admin_token_env)"
        )
    );
}

#[test]
fn an_unknown_top_level_field_is_named() {
    let e = error(Some("[google]\nlogo = \"x\""), None);
    assert_eq!((e.provider.as_str(), e.field.as_str()), ("google", "logo"));
}

#[test]
fn the_authorization_url_carries_the_flow_and_the_provider_quirks() {
    let c = load(None, None).unwrap();
    let slack = oauth2(c.get("slack").unwrap());
    let u =
        crate::oauth2::authorization_url(slack, "cid", "https://bk.example/api/v1/connections/callback", "st8", None);
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    assert_eq!(q["user_scope"], "channels:read,channels:history,chat:write,users:read");
    assert!(!q.contains_key("scope") && !q.contains_key("code_challenge"));
    assert_eq!((q["state"].as_str(), q["client_id"].as_str(), q["response_type"].as_str()), ("st8", "cid", "code"));
    let google = oauth2(c.get("google").unwrap());
    let u = crate::oauth2::authorization_url(google, "cid", "https://bk.example/cb", "st8", Some("chal"));
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    assert_eq!(
        (q["scope"].as_str(), q["access_type"].as_str(), q["prompt"].as_str()),
        ("openid email profile", "offline", "consent")
    );
    assert_eq!((q["code_challenge"].as_str(), q["code_challenge_method"].as_str()), ("chal", "S256"));
}

#[test]
fn an_mcp_server_on_plain_http_needs_loopback_and_the_development_switch() {
    let text = "[local]\nname = \"Local\"\nauth = \"mcp\"\n[local.mcp]\nurl = \"http://127.0.0.1:8931/mcp\"\n";
    let load_with = |allow: bool, text: &str| {
        Catalog::load(
            &CatalogSources { operator_file: Some(("p.toml", text)), config: None, allow_http_loopback: allow },
            &no_env,
        )
    };
    let e = load_with(false, text).err().unwrap().to_string();
    assert!(e.contains("mcp.url") && e.contains("https"), "{e}");
    assert!(load_with(true, text).is_ok());
    let remote = text.replace("127.0.0.1", "mcp.example.com");
    assert!(load_with(true, &remote).is_err(), "plain http only to this machine");
}

#[test]
fn http_tools_are_checked_at_start() {
    let with = |def: &str| {
        load(
            Some(&format!(
                "[acme]\nname = \"Acme\"\nauth = \"api_key\"\ntools = {{ kind = \"http\", definitions = [{def}] }}\n"
            )),
            None,
        )
    };
    let ok = with(
        r#"{ name = "get_deal", url = "https://api.acme.example/deals/{id}", render = "table", table_path = "/items", headers = { "Acme-Version" = "2" }, input_schema = { type = "object", properties = { id = { type = "string" } }, required = ["id"] } }"#,
    )
    .unwrap();
    let ToolSource::Http { tools } = &ok.get("acme").unwrap().tools else { panic!() };
    assert_eq!(tools[0].path_params(), ["id"]);
    assert_eq!((tools[0].render, tools[0].method.as_str()), (Render::Table, "GET"));
    for (def, field) in [
        (r#"{ name = "x y", url = "https://a.example/x" }"#, "tools.definitions[0].name"),
        (r#"{ name = "x", method = "TRACE", url = "https://a.example/x" }"#, "tools.definitions[0].method"),
        (r#"{ name = "x", url = "http://a.example/x" }"#, "tools.definitions[0].url"),
        (r#"{ name = "x", url = "https://a.example/x?a=1" }"#, "tools.definitions[0].url"),
        (r#"{ name = "x", url = "https://a.example/x/{id}" }"#, "tools.definitions[0].url"),
        (
            r#"{ name = "x", url = "https://a.example/x", headers = { Authorization = "Bearer s" } }"#,
            "tools.definitions[0].headers.Authorization",
        ),
        (r#"{ name = "x", url = "https://a.example/x", render = "html" }"#, "tools.definitions[0].render"),
        (
            r#"{ name = "x", url = "https://a.example/x", input_schema = { type = "string" } }"#,
            "tools.definitions[0].input_schema",
        ),
        (r#"{ name = "x", url = "https://a.example/x", verb = "GET" }"#, "tools.definitions[0]"),
        (
            r#"{ name = "x", url = "https://a.example/x" }, { name = "x", url = "https://a.example/y" }"#,
            "tools.definitions[1].name",
        ),
    ] {
        let e = with(def).err().unwrap().to_string();
        assert!(e.contains(&format!("field `{field}`")), "{def}: {e}");
    }
}

#[test]
fn a_preregistered_mcp_client_secret_names_its_authorization_server() {
    let text = |extra: &str| {
        format!(
            "[docs]\nname = \"Docs\"\nauth = \"mcp\"\n[docs.mcp]\nurl = \"https://mcp.docs.example/mcp\"\nclient_id = \"bk\"\nclient_secret = \"s3cret\"\n{extra}"
        )
    };
    let e = load(Some(&text("")), None).err().unwrap().to_string();
    assert!(e.contains("field `mcp.issuer`") && !e.contains("s3cret"), "{e}");
    let c = load(Some(&text("issuer = \"https://auth.docs.example\"\n")), None).unwrap();
    assert!(
        matches!(&c.get("docs").unwrap().auth, AuthKind::Mcp(m) if m.issuer.as_deref() == Some("https://auth.docs.example"))
    );
}

#[test]
fn a_bridged_provider_needs_its_admin_token_at_start() {
    let bridged = "[nexus]\nname = \"Nexus\"\nauth = \"token_exchange\"\n\
                   token_exchange = { verify_url = \"https://api.nexus.example/auth/verify\", bridge = true }";
    let e = error(Some(bridged), None);
    assert_eq!((e.provider.as_str(), e.field.as_str()), ("nexus", "token_exchange.bridge"));
    assert!(e.message.contains("connections.providers.nexus.token_exchange.admin_token"), "{}", e.message);
    // With the token (from the operator's configuration) it loads, bridged; without the flag it is not.
    let c = load(Some(bridged), Some("[nexus.token_exchange]\nadmin_token = \"adm\"")).unwrap();
    assert!(c.get("nexus").unwrap().bridged().is_some());
    let plain = bridged.replace(", bridge = true", "");
    let c = load(Some(&plain), None).unwrap();
    assert!(c.get("nexus").unwrap().bridged().is_none());
    let e = error(Some(&bridged.replace("bridge = true", "bridge = \"yes\"")), None);
    assert_eq!(e.provider, "nexus");
}
