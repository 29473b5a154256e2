# Misconfiguration is refused at startup (httpd -t on a throw-away
# configuration that loads the module), with a message that names the
# directive and never quotes a secret:
#  - a secret file, a header file or a client key readable by everyone;
#  - a missing CA file, client certificate, key or secret file;
#  - bad whsec_ secrets (no prefix, not base64, too short or too long);
#  - endpoints that are not http or https URLs (ftp, file, gopher, ...),
#    with user info, or a host APR and libcurl could read differently;
#  - extra headers the module sets itself, or with control characters.
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
    # positive controls
    (map { ["starts: $_->[0]", $_->[1], undef, []] }
        ['http endpoint', 'EventTriggerEndpoint http://hooks.example/cb'],
        ['https endpoint', 'EventTriggerEndpoint HTTPS://hooks.example:8443/cb/'],
        ['inline secret, rotation', $site->("EventTriggerSecret $good_secret", "EventTriggerSecret file:$closed_secret")],
        ['secret file 0640', $site->("EventTriggerSecret file:$group_secret")],
        ['header from a 0600 file', $site->("EventTriggerHeader Authorization file:$closed_token")],
        ['client certificate and key, CA file', $site->("EventTriggerClientCert $cert $key",
                                                      'EventTriggerCAFile ' . sec_file('ca.pem'))],
        ['client certificate and key in one 0600 file', $site->('EventTriggerClientCert ' . sec_file('client-both.pem'))]),
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
