# Misconfiguration is refused at startup (httpd -t on a throw-away
# configuration that loads the module), with a message that names the
# directive and never quotes a secret:
#  - a secret file, a header file or a client key readable by everyone;
#  - a missing CA file, client certificate, key or secret file;
#  - bad whsec_ secrets (no prefix, not base64, too short or too long);
#  - endpoints that are not http or https URLs (ftp, file, gopher, ...),
#    with user info, or a host APR and libcurl could read differently;
#  - extra headers the module sets itself, or with control characters;
#  - EventTriggerProxy: a scheme other than http/https, credentials in the
#    URL (never quoted back), a path, a credentials file that is missing,
#    unreadable, readable by everyone, empty or without user:password,
#    credentials given inline or with env/off; each message names the
#    configuration file and line.
# The same directives with good values start (positive controls).
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETSecurity qw(:all);
use File::Temp ();
use MIME::Base64 qw(encode_base64);

ETSecurity::setup();
my $tmp = File::Temp->newdir;
sub file_with {
    my($name, $data, $mode) = @_;
    my $f = "$tmp/$name";
    open my $fh, '>:raw', $f or die "$f: $!";
    print $fh $data;
    close $fh;
    chmod $mode, $f;
    return $f;
}

my $good_secret = 'whsec_' . encode_base64('k' x 32, '');
my $hidden = 'whsec_' . encode_base64('hunter2-hunter2-hunter2!', '');
my $token = 'Bearer tok-hunter2-topsecret';
my $open_secret = file_with('open.whsec', "$hidden\n", 0644);
my $closed_secret = file_with('closed.whsec', "$hidden\n", 0600);
my $group_secret = file_with('group.whsec', "$hidden\n", 0640);
my $open_token = file_with('open.token', "$token\n", 0644);
my $closed_token = file_with('closed.token', "$token\n", 0600);
my $ctl_token = file_with('ctl.token', "Bearer a\x01b\n", 0600);
my $bad_secret_file = file_with('bad.whsec', "sk_live_hunter2hunter2hunter2\n", 0600);
my $key_pem = ETSecurity::read_file(sec_file('client.key'));
my $cert_pem = ETSecurity::read_file(sec_file('client.pem'));
my $open_key = file_with('open.key', $key_pem, 0644);
my $open_both = file_with('open-both.pem', $cert_pem . $key_pem, 0604);
my $cert = sec_file('client.pem');
my $key = sec_file('client.key');
my $proxy_pw = 'hunter2-proxy-pw';
my $cred_ok = file_with('proxy.cred', "etuser:$proxy_pw\n", 0600);
my $cred_open = file_with('proxy-open.cred', "etuser:$proxy_pw\n", 0644);
my $cred_empty = file_with('proxy-empty.cred', "\n", 0600);
my $cred_nocolon = file_with('proxy-nocolon.cred', "$proxy_pw\n", 0600);
my $cred_unreadable = file_with('proxy-unreadable.cred', "etuser:$proxy_pw\n", 0000);
my @key_lines = grep { length >= 16 && !/-----/ } split /\n/, $key_pem;

my $site = sub { join "\n", '<VirtualHost 127.0.0.1:8080>', 'ServerName cfg.example',
                 'EventTriggerEndpoint https://hooks.example/cb', @_, '</VirtualHost>' };

# [name, directives, expected message (undef: starts), secrets that must not be quoted]
my @cases = (
    ['secret file readable by everyone', $site->("EventTriggerSecret file:$open_secret"),
     qr/EventTriggerSecret: \Q$open_secret\E holds a secret and is readable by everyone/, [$hidden]],
    ['header file readable by everyone', $site->("EventTriggerHeader Authorization file:$open_token"),
     qr/EventTriggerHeader: \Q$open_token\E holds a secret and is readable by everyone/, [$token]],
    ['client key readable by everyone', $site->("EventTriggerClientCert $cert $open_key"),
     qr/EventTriggerClientCert: \Q$open_key\E holds a secret and is readable by everyone/, \@key_lines],
    ['certificate and key in one file readable by everyone', $site->("EventTriggerClientCert $open_both"),
     qr/EventTriggerClientCert: \Q$open_both\E holds a secret and is readable by everyone/, \@key_lines],
    ['missing CA file', $site->("EventTriggerCAFile $tmp/none-ca.pem"),
     qr/EventTriggerCAFile: cannot read \Q$tmp\E\/none-ca\.pem/, []],
    ['CA "file" that is a directory', $site->("EventTriggerCAFile $tmp"),
     qr/EventTriggerCAFile: \Q$tmp\E is not a regular file/, []],
    ['missing client certificate', $site->("EventTriggerClientCert $tmp/none.pem $key"),
     qr/EventTriggerClientCert: cannot read/, []],
    ['missing client key', $site->("EventTriggerClientCert $cert $tmp/none.key"),
     qr/EventTriggerClientCert: cannot read/, []],
    ['missing secret file', $site->("EventTriggerSecret file:$tmp/none.whsec"),
     qr/EventTriggerSecret: cannot read/, []],
    ['secret without whsec_', $site->('EventTriggerSecret sk_live_hunter2hunter2hunter2'),
     qr/EventTriggerSecret: a secret starts with whsec_/, ['hunter2']],
    ['secret file without whsec_', $site->("EventTriggerSecret file:$bad_secret_file"),
     qr/EventTriggerSecret: a secret starts with whsec_/, ['hunter2']],
    ['secret that is not base64', $site->('EventTriggerSecret whsec_hunter2!hunter2!hunter2!'),
     qr/EventTriggerSecret: the secret after whsec_ is not base64/, ['hunter2']],
    ['secret of a bad length', $site->('EventTriggerSecret whsec_aHVudGVyMg'),
     qr/EventTriggerSecret: the secret after whsec_ is not base64 \(bad length\)/, ['aHVudGVyMg']],
    ['secret too short', $site->('EventTriggerSecret whsec_' . encode_base64('hunter2', '')),
     qr/EventTriggerSecret: a secret must hold 16 to 128 bytes/, [encode_base64('hunter2', '')]],
    ['secret too long', $site->('EventTriggerSecret whsec_' . encode_base64('h' x 129, '')),
     qr/EventTriggerSecret: a secret must hold 16 to 128 bytes/, [substr(encode_base64('h' x 129, ''), 0, 40)]],
    ['empty secret', $site->('EventTriggerSecret whsec_'),
     qr/EventTriggerSecret: the secret after whsec_ is not base64/, []],
    ['header the module sets (Host)', $site->('EventTriggerHeader Host evil.example'),
     qr/EventTriggerHeader/, []],
    ['webhook-* header', $site->('EventTriggerHeader webhook-signature v1,x'),
     qr/EventTriggerHeader.*signature/, []],
    ['header value with a control character', $site->("EventTriggerHeader Authorization file:$ctl_token"),
     qr/EventTriggerHeader Authorization: the value holds a control character/, ['Bearer a']],
    (map { ["endpoint $_->[0]", "EventTriggerEndpoint $_->[0]", $_->[1], []] }
        ['ftp://hooks.example/cb', qr/EventTriggerEndpoint: scheme must be http or https/],
        ['file:///etc/passwd', qr/EventTriggerEndpoint: scheme must be http or https/],
        ['gopher://hooks.example/cb', qr/EventTriggerEndpoint: scheme must be http or https/],
        ['ldap://hooks.example/', qr/EventTriggerEndpoint: scheme must be http or https/],
        ['javascript:alert(1)', qr/EventTriggerEndpoint: scheme must be http or https/],
        ['//hooks.example/cb', qr/EventTriggerEndpoint: scheme must be http or https/],
        ['https:///cb', qr/EventTriggerEndpoint: URL has no host/],
        ['https://hooks.example:0/cb', qr/EventTriggerEndpoint: port must be/],
        ['https://hooks.example/cb?x=1', qr/EventTriggerEndpoint: URL must not have a query/],
        ['https://hooks.example%2eevil.example/cb', qr/EventTriggerEndpoint: host must be/]),
    ['endpoint with user info (password not quoted)', 'EventTriggerEndpoint https://u:hunter2pw@hooks.example/cb',
     qr/EventTriggerEndpoint: URL must not contain user info/, ['hunter2pw']],
    (map { ["proxy: $_->[0]", $site->("EventTriggerProxy $_->[1]"),
            qr/Syntax error on line \d+ of \S+httpd\.conf:\s*$_->[2]/, [$proxy_pw]] }
        ['socks5 scheme', 'socks5h://proxy.example:1080', qr/EventTriggerProxy: scheme must be http or https/],
        ['ftp scheme', 'ftp://proxy.example', qr/EventTriggerProxy: scheme must be http or https/],
        ['no scheme', 'proxy.example:3128', qr/EventTriggerProxy: /],
        ['credentials in the URL', "http://etuser:$proxy_pw\@proxy.example:3128",
         qr/EventTriggerProxy: credentials must not be in the URL.*credentials=file:PATH/],
        ['a path', 'http://proxy.example:3128/proxy', qr/EventTriggerProxy: a proxy URL has no path/],
        ['a query', 'http://proxy.example:3128?x', qr/EventTriggerProxy: URL must not have a query/],
        ['missing credentials file', "http://proxy.example:3128 credentials=file:$tmp/none.cred",
         qr/EventTriggerProxy: cannot read \Q$tmp\E\/none\.cred/],
        ['unreadable credentials file', "http://proxy.example:3128 credentials=file:$cred_unreadable",
         qr/EventTriggerProxy: cannot read \Q$cred_unreadable\E/],
        ['credentials file readable by everyone', "http://proxy.example:3128 credentials=file:$cred_open",
         qr/EventTriggerProxy: \Q$cred_open\E holds a secret and is readable by everyone/],
        ['empty credentials file', "http://proxy.example:3128 credentials=file:$cred_empty",
         qr/EventTriggerProxy: \Q$cred_empty\E does not hold user:password/],
        ['credentials without a colon', "http://proxy.example:3128 credentials=file:$cred_nocolon",
         qr/EventTriggerProxy: \Q$cred_nocolon\E does not hold user:password/],
        ['inline credentials', "http://proxy.example:3128 credentials=etuser:$proxy_pw",
         qr/EventTriggerProxy: the second argument is credentials=file:PATH/],
        ['credentials with env', "env credentials=file:$cred_ok", qr/EventTriggerProxy env takes no credentials/],
        ['three arguments', "http://proxy.example:3128 credentials=file:$cred_ok x", qr/EventTriggerProxy takes 1-2 arguments/]),
    # positive controls
    (map { ["starts: $_->[0]", $_->[1], undef, []] }
        ['http endpoint', 'EventTriggerEndpoint http://hooks.example/cb'],
        ['https endpoint', 'EventTriggerEndpoint HTTPS://hooks.example:8443/cb/'],
        ['inline secret, rotation', $site->("EventTriggerSecret $good_secret", "EventTriggerSecret file:$closed_secret")],
        ['secret file 0640', $site->("EventTriggerSecret file:$group_secret")],
        ['header from a 0600 file', $site->("EventTriggerHeader Authorization file:$closed_token")],
        ['client certificate and key, CA file', $site->("EventTriggerClientCert $cert $key",
                                                      'EventTriggerCAFile ' . sec_file('ca.pem'))],
        ['client certificate and key in one 0600 file', $site->('EventTriggerClientCert ' . sec_file('client-both.pem'))],
        ['proxy with credentials', $site->("EventTriggerProxy http://proxy.example:3128 credentials=file:$cred_ok")],
        ['proxy https, IPv6, no port', $site->('EventTriggerProxy https://[::1]/')],
        ['proxy env, off', join("\n", 'EventTriggerProxy off', $site->('EventTriggerProxy env'))]),
);

plan tests => scalar @cases;

for my $c (@cases) {
    my($name, $directives, $re, $hide) = @$c;
    my($rc, $out) = configtest($directives);
    my @quoted = grep { index($out, $_) >= 0 } @$hide;
    if (defined $re) {
        ok($rc != 0 && $out =~ $re && !@quoted, "refused: $name")
            or diag("exit $rc, quoted: @quoted\n$out");
    }
    else {
        ok($rc == 0 && $out =~ /Syntax OK/, $name) or diag("exit $rc\n$out");
    }
}
