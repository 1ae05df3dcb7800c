//! What SQL Server's login error numbers and 18456 states mean, and what to check next.
//! Source: `../shared/knowledge/login-errors.md` (Learn "MSSQLSERVER_18456", the 4060/18452/
//! 184xx pages, and community references marked there).

/// The reason behind a login ERROR, for a DBA, and the next thing to check.
pub struct LoginErrorMeaning {
    pub meaning: &'static str,
    pub check: &'static str,
}

const fn m(meaning: &'static str, check: &'static str) -> LoginErrorMeaning {
    LoginErrorMeaning { meaning, check }
}

/// 18456 states. On-premises servers send state 1 to clients and write the real state only
/// to the ERRORLOG; Azure SQL and old servers send the real state.
fn state_18456(state: u8) -> LoginErrorMeaning {
    match state {
        1 => m(
            "login failed; the server hides the reason from clients (state 1)",
            "Read the SQL Server ERRORLOG at the time of the failure: the matching 18456 entry there carries the real state and reason.",
        ),
        2 | 5 => m(
            "the login name does not exist on this server",
            "Check the login exists on this instance (sys.server_principals) and that the client connects to the server you think (a development name in a production string).",
        ),
        6 => m(
            "a Windows account name was used with SQL Server authentication",
            "Use integrated security for DOMAIN\\user accounts, or create a SQL login.",
        ),
        7 => m(
            "the login is disabled and the password is wrong",
            "Enable the login (ALTER LOGIN ... ENABLE) and check the password.",
        ),
        8 => m(
            "the password is wrong",
            "Check the password the application uses (connection string, credential store, service or job accounts); passwords are case-sensitive.",
        ),
        9 => m("the password is not valid", "Check the password against the password policy."),
        11 | 12 => m(
            "the login is valid but has no access to the server (CONNECT SQL denied, or a Windows account known only through a group or UAC)",
            "Check server permissions (GRANT CONNECT SQL), explicit logins for Windows accounts, and run the client elevated if access comes through local Administrators.",
        ),
        13 => m("the SQL Server service is paused", "Resume the SQL Server service."),
        16 | 38 | 46 | 126 => m(
            "the database named in the login cannot be opened (missing, offline, restricted, or no user in it)",
            "Check the database name in the connection string, the database state (sys.databases), and that the login has a user in it.",
        ),
        18 => m("the password must be changed", "Change the login's password (it is flagged MUST_CHANGE or expired)."),
        23 => m("the server is shutting down", "Retry after the restart finishes; check why the server restarted."),
        27 | 40 => m(
            "the login's default database cannot be opened",
            "Fix the login's default database (ALTER LOGIN ... WITH DEFAULT_DATABASE) or name a database in the connection string.",
        ),
        58 => m(
            "the server accepts only Windows authentication",
            "Enable mixed-mode authentication on the server, or use integrated security.",
        ),
        102..=111 | 132 | 133 => m(
            "Microsoft Entra (Azure AD) authentication failed",
            "Check the Entra identity, token audience and that a user exists for it in the database.",
        ),
        122..=124 => m(
            "the user name or password was empty",
            "Check the connection string: the application sent a blank credential.",
        ),
        233 => m("the Entra token has expired", "Refresh the token; long-lived connections need token renewal."),
        _ => m(
            "login failed (see the state in the ERRORLOG)",
            "Read the SQL Server ERRORLOG entry for this failure.",
        ),
    }
}

/// The meaning of a login-time error number (and 18456 state).
pub fn login_error(number: i32, state: u8) -> LoginErrorMeaning {
    match number {
        18456 => state_18456(state),
        4060 => m(
            "the database requested by the login cannot be opened",
            "Check the database name in the connection string, that the database is online, and that the login is mapped to a user in it.",
        ),
        4064 => m(
            "the login's default database cannot be opened",
            "Fix the login's default database or name a database in the connection string.",
        ),
        18452 => m(
            "the Windows login is from an untrusted domain or could not be validated",
            "Check domain trusts and domain controller reachability from the server, the SPN, and that a local account is not used across machines.",
        ),
        18461 => m("the server is in single-user mode", "Wait for the administrator's session to end or restart the server normally."),
        18470 => m("the login is disabled", "Enable the login (ALTER LOGIN ... ENABLE)."),
        18486 => m(
            "the login is locked out after too many bad passwords",
            "Find the client retrying with a bad password, fix it, then unlock the login (ALTER LOGIN ... WITH PASSWORD ... UNLOCK).",
        ),
        18487 => m("the password has expired", "Change the login's password."),
        18488 => m("the password must be changed before first use", "Change the login's password."),
        18401 => m("the server is in script upgrade mode", "Wait for the upgrade scripts to finish (ERRORLOG)."),
        18451 => m("only administrators may connect now", "Wait for admin-only mode to end."),
        17809 => m(
            "the server has reached its maximum number of user connections",
            "Check sp_configure 'user connections' and find who holds the connections (sys.dm_exec_sessions); look for a connection leak or no pooling.",
        ),
        17892 => m("a logon trigger rolled back the login", "Check the server's logon triggers."),
        _ => m(
            "the server refused the login",
            "Look up the error number in the SQL Server documentation and the ERRORLOG.",
        ),
    }
}

/// Integrated-authentication failures reported as errors (rather than 18456).
pub fn is_sspi_error(number: i32) -> bool {
    matches!(number, 18452 | 17806)
}
