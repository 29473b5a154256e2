package ETSecurity;

# Helpers for the security tests (t/api/sign.t, tls.t, secrets.t,
# bad_input.t, misconfig.t): the keys, secrets and certificates they make,
# the ports of t/conf/security.conf, the TLS receiver and the broken console,
# the two independent signature verifiers, and configuration tests of a
# throw-away httpd configuration (httpd -t).

use strict;
use warnings;

use Exporter 'import';
use Apache::Test ();
use Test::More ();
use JSON::PP ();
use MIME::Base64 qw(encode_base64 decode_base64);
use File::Path qw(make_path);
use File::Spec::Functions qw(catfile);
use File::Temp ();
use Encode ();

use ETTest qw(t_path wait_for httpd_stop httpd_start calls);

our @EXPORT_OK = qw(
    sdefine sec_dir sec_file setup materials secrets_to_hide
    start_tls_receiver start_raw_console handshakes
    verify_calls body_bytes
    configtest httpd_restart_with defines_now
    read_file error_log_since error_log_size
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

my $JSON = JSON::PP->new->utf8->canonical;

sub config { Apache::Test::config() }

# A Define of the generated t/conf/security.conf.
my %defines;
sub sdefine {
    my $name = shift;
    unless (%defines) {
        my $file = t_path('t_conf', 'security.conf');
        open my $fh, '<', $file or die "open $file: $!";
        while (<$fh>) {
            $defines{$1} = $2 if /^\s*Define\s+(\S+)\s+(\S+)/;
        }
    }
    defined $defines{$name} or die "no Define $name in t/conf/security.conf";
    return $defines{$name};
}

sub sec_dir { sdefine('ET_SEC_DIR') }
sub sec_file { catfile(sec_dir(), @_) }

sub read_file {
    my $f = shift;
    open my $fh, '<:raw', $f or die "open $f: $!";
    local $/;
    return scalar <$fh>;
}

sub write_file {
    my($f, $data, $mode) = @_;
    my $old = umask 077;
    open my $fh, '>:raw', $f or die "write $f: $!";
    print $fh $data;
    close $fh or die "close $f: $!";
    umask $old;
    chmod $mode, $f or die "chmod $f: $!";
}

sub run_quiet {
    my @cmd = @_;
    my $out = `@{[ join ' ', map { quotemeta } @cmd ]} 2>&1`;
    die "failed ($?): @cmd\n$out" if $?;
    return $out;
}

sub random_bytes {
    my $n = shift;
    open my $fh, '<:raw', '/dev/urandom' or die "urandom: $!";
    read($fh, my $b, $n) == $n or die "urandom: short read";
    return $b;
}

# The inline secret of et_sec_signed (t/conf/security.conf.in).
use constant SECRET1 => 'whsec_c2lnbmluZy1rZXktb25lLWZvci10aGUtdGVzdHM=';

# -- the material ------------------------------------------------------------

# Make what is missing in t/state/security: secrets (0600), a bearer token
# (0600), a test CA and a second, unknown one, server certificates (good,
# wrong host, unknown CA, expired) and a client certificate for mutual TLS
# (key 0600). Returns the number of files made.
sub make_material {
    my $dir = sec_dir();
    make_path($dir, { mode => 0700 });
    chmod 0700, $dir;
    my $made = 0;

    for my $s (qw(secret2 secret3)) {
        my $f = catfile($dir, "$s.whsec");
        next if -e $f;
        write_file($f, 'whsec_' . encode_base64(random_bytes(32), '') . "\n", 0600);
        $made++;
    }
    my $bearer = catfile($dir, 'bearer.txt');
    unless (-e $bearer) {
        write_file($bearer, "Bearer tok-" . unpack('H*', random_bytes(20)) . "\n", 0600);
        $made++;
    }

    my $ca = catfile($dir, 'ca.pem');
    return $made if -e $ca && -e catfile($dir, 'client-both.pem');
    $made++;

    my $ec = '-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';
    my $sh = sub {
        my $cmd = shift;
        my $out = `cd \Q$dir\E && umask 077 && $cmd 2>&1`;
        die "openssl failed ($?): $cmd\n$out" if $?;
    };
    for my $c (['ca', 'ET Test CA'], ['ca2', 'ET Unknown CA']) {
        $sh->("openssl req -x509 $ec -keyout $c->[0].key -out $c->[0].pem "
            . "-days 3650 -subj '/CN=$c->[1]' "
            . "-addext 'basicConstraints=critical,CA:TRUE' "
            . "-addext 'keyUsage=critical,keyCertSign,cRLSign'");
    }
    write_file(catfile($dir, 'server.ext'),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
      . "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n", 0644);
    write_file(catfile($dir, 'wronghost.ext'),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
      . "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:wrong.example,IP:192.0.2.1\n", 0644);
    write_file(catfile($dir, 'client.ext'),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
      . "extendedKeyUsage=clientAuth\n", 0644);
    my $sign = sub {
        my($name, $cn, $ca, $ext) = @_;
        $sh->("openssl req $ec -keyout $name.key -out $name.csr -subj '/CN=$cn'");
        $sh->("openssl x509 -req -in $name.csr -CA $ca.pem -CAkey $ca.key "
            . "-CAcreateserial -days 825 -extfile $ext.ext -out $name.pem");
    };
    $sign->('server', 'localhost', 'ca', 'server');
    $sign->('wronghost', 'wrong.example', 'ca', 'wronghost');
    $sign->('unknown', 'localhost', 'ca2', 'server');
    $sign->('client', 'et-client', 'ca', 'client');

    # expired: openssl ca sets both dates (OpenSSL 3.0's x509 cannot)
    make_path(catfile($dir, 'cadb'));
    write_file(catfile($dir, 'cadb', 'index.txt'), '', 0600);
    write_file(catfile($dir, 'cadb', 'serial'), "1000\n", 0600);
    write_file(catfile($dir, 'ca.cnf'), <<'CNF', 0600);
[ca]
default_ca = test
[test]
database = cadb/index.txt
serial = cadb/serial
new_certs_dir = cadb
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
CNF
    $sh->("openssl req $ec -keyout expired.key -out expired.csr -subj '/CN=localhost'");
    $sh->("openssl ca -batch -config ca.cnf -in expired.csr -out expired.pem "
        . "-notext -startdate 20200101000000Z -enddate 20200201000000Z "
        . "-extfile server.ext");

    # public parts readable, keys not
    chmod 0644, map { catfile($dir, $_) }
        qw(ca.pem ca2.pem server.pem wronghost.pem unknown.pem expired.pem client.pem);
    chmod 0600, glob(catfile($dir, '*.key'));
    write_file(catfile($dir, 'client-both.pem'),
               read_file(catfile($dir, 'client.pem')) . read_file(catfile($dir, 'client.key')),
               0600);
    return $made;
}

# Everything a test needs: the material exists and the running httpd has
# read it (restarted once if the material was just made). Dies on failure.
my $SET_UP;
sub setup {
    return 1 if $SET_UP;
    my $made = make_material();
    if ($made) {
        httpd_stop();
        httpd_start() or die "httpd did not start with the security material";
    }
    $SET_UP = 1;
}

# Secret material a test checks for leaks: name => text.
sub secrets_to_hide {
    my %s;
    $s{'inline whsec'} = SECRET1;
    ($s{'inline whsec, base64 part'}) = SECRET1 =~ /^whsec_(.*)$/;
    for my $n (qw(secret2 secret3)) {
        my $v = read_file(sec_file("$n.whsec"));
        $v =~ s/\s+\z//;
        $s{"$n whsec (file)"} = $v;
        ($s{"$n base64 part"}) = $v =~ /^whsec_(.*)$/;
    }
    my $bearer = read_file(sec_file('bearer.txt'));
    $bearer =~ s/\s+\z//;
    $s{'Authorization value (file)'} = $bearer;
    ($s{'bearer token'}) = $bearer =~ /(tok-\w+)/;
    for my $k (qw(client.key)) {
        my $pem = read_file(sec_file($k));
        my @lines = grep { length >= 16 && !/-----/ } split /\n/, $pem;
        my $i = 0;
        $s{"$k line " . ++$i} = $_ for @lines;
    }
    return \%s;
}

sub materials {
    return {
        secret1 => SECRET1,
        map { my $v = read_file(sec_file("$_.whsec")); $v =~ s/\s+\z//; ($_ => $v) }
            qw(secret2 secret3),
    };
}

# -- helper processes ----------------------------------------------------------

sub python { $ENV{ET_PYTHON} || 'python3' }

# start_tls_receiver(port => N, cert => 'server', log => FILE,
#                    client_ca => 'ca', status => 200) -> pid
sub start_tls_receiver {
    my %a = @_;
    my @argv = (python(), t_path('t_dir', 'bin', 'tls_receiver.py'),
                '--port', $a{port}, '--log', $a{log},
                '--cert', sec_file("$a{cert}.pem"), '--key', sec_file("$a{cert}.key"),
                '--status', $a{status} // 200);
    push @argv, '--client-ca', sec_file("$a{client_ca}.pem") if $a{client_ca};
    for my $f ($a{log}, "$a{log}.handshakes") {
        open my $fh, '>', $f or die "truncate $f: $!";
        close $fh;
    }
    return ETTest::spawn(name => "tls_receiver:$a{port}", port => $a{port},
                         out => t_path('t_logs', 'tls_receiver.out'), argv => \@argv);
}

# The failed handshakes a TLS receiver recorded.
sub handshakes {
    my $log = shift;
    open my $fh, '<:raw', "$log.handshakes" or return ();
    my @h;
    while (my $l = <$fh>) {
        last unless $l =~ /\n\z/;
        push @h, JSON::PP->new->utf8->decode($l);
    }
    return @h;
}

sub start_raw_console {
    my $port = sdefine('ET_SEC_RAW_PORT');
    return ETTest::spawn(name => 'raw_console', port => $port,
                         out => t_path('t_logs', 'raw_console.out'),
                         argv => [python(), t_path('t_dir', 'bin', 'raw_console.py'),
                                  '--port', $port]);
}

# -- signatures ----------------------------------------------------------------

# The exact bytes of a recorded call's body (tls_receiver.py records them;
# receiver.py records the UTF-8 text, which our bodies always are).
sub body_bytes {
    my $call = shift;
    return decode_base64($call->{body_b64}) if defined $call->{body_b64};
    return Encode::encode('UTF-8', $call->{body});
}

# verify_calls([[$call, $secret], ...]) -> { node => [...], python => [...] }:
# the answers ("ok" or "fail: ...") of both independent verifiers, one per
# pair, in order.
sub verify_calls {
    my $pairs = shift;
    my $tmp = File::Temp->new(SUFFIX => '.jsonl');
    binmode $tmp;
    for my $p (@$pairs) {
        my($call, $secret, $body) = @$p;
        $body //= body_bytes($call);
        my %h = map { ($_ => $call->{headers}{$_}) }
                grep { /^webhook-/ } keys %{ $call->{headers} };
        print $tmp $JSON->encode({ secret => $secret, headers => \%h,
                                   body_b64 => encode_base64($body, '') }), "\n";
    }
    close $tmp;
    my %r;
    my $js = t_path('t_dir', 'js', 'verify.js');
    my $nm = t_path('t_dir', 'js', 'node_modules', 'standardwebhooks');
    die "t/js/node_modules is missing: run npm ci in t/js\n" unless -d $nm;
    $r{node} = [split /\n/, `node \Q$js\E \Q$tmp\E 2>&1`];
    $r{python} = [split /\n/, `@{[python()]} \Q@{[t_path('t_dir', 'bin', 'verify_webhook.py')]}\E \Q$tmp\E 2>&1`];
    return \%r;
}

# -- httpd ---------------------------------------------------------------------

sub error_log_size { -s t_path('t_logs', 'error_log') // 0 }

# The error log's text after byte $from.
sub error_log_since {
    my $from = shift // 0;
    open my $fh, '<:raw', t_path('t_logs', 'error_log') or return '';
    seek $fh, $from, 0;
    local $/;
    return scalar(<$fh>) // '';
}

sub defines_now { config()->{vars}->{defines} // '' }

# Restart httpd with these -D defines (a string, '' for none).
sub httpd_restart_with {
    my $defines = shift;
    httpd_stop();
    config()->{vars}->{defines} = $defines;
    return httpd_start();
}

# configtest($directives, %opt) -> ($exit_status, $output): httpd -t on a
# throw-away configuration that loads the module and holds $directives.
sub configtest {
    my($directives, %o) = @_;
    my $dir = File::Temp->newdir;
    my $cfg = config();
    my $httpd = $cfg->{vars}->{httpd} or die "no httpd";
    my $so = t_path('t_dir', '..', '.libs', 'mod_eventtrigger.so');
    # the MPM (and other LoadModule lines the module needs) as the test
    # server loads them
    my $main = read_file(t_path('t_conf', 'httpd.conf'));
    my @load = grep { /mod_mpm_|mpm_\w+_module/ } split /\n/, $main;
    my $conf = join "\n",
        "ServerRoot \"$dir\"",
        "ServerName localhost",
        "PidFile \"$dir/httpd.pid\"",
        "ErrorLog \"$dir/error_log\"",
        "Listen 127.0.0.1:1",
        @load,
        "<IfModule !eventtrigger_module>",
        "LoadModule eventtrigger_module \"$so\"",
        "</IfModule>",
        "EventTriggerStore sqlite3:$dir/outbox.db",
        $directives, '';
    my $file = "$dir/httpd.conf";
    open my $fh, '>', $file or die "write $file: $!";
    print $fh $conf;
    close $fh;
    my $out = `\Q$httpd\E -t -d \Q$dir\E -f \Q$file\E 2>&1`;
    my $rc = $? >> 8;
    $out .= read_file("$dir/error_log") if -e "$dir/error_log";
    return ($rc, $out, $conf);
}

1;
