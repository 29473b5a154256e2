package ETProxyEnv;

# httpd runs with the *_proxy variables pointing at ET_PROXY_ENV_PORT of
# t/conf/proxy.conf, for the whole suite: nothing listens there but while
# api/proxy.t runs a proxy, so every site without EventTriggerProxy (off)
# shows in every test that it ignores the environment, and api/proxy.t's
# "EventTriggerProxy env" sites that they follow it. Only httpd gets them
# (on its command line), not the tests' own clients (LWP, curl, Python).
#
# Loaded by t/TEST and by ETTest.pm: the tests restart httpd themselves
# (ETTest::httpd_start), through the same Apache::TestServer::start_cmd.

use strict;
use warnings;

use Apache::TestServer ();
use File::Spec::Functions qw(catfile);

our @VARS = qw(http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY);

# The port of the environment's proxy, from the generated t/conf/proxy.conf.
sub port {
    my $t_conf = shift;
    my $port;
    open my $fh, '<', catfile($t_conf, 'proxy.conf') or return undef;
    while (<$fh>) {
        $port = $1 if /^\s*Define\s+ET_PROXY_ENV_PORT\s+(\d+)/;
    }
    return $port;
}

{
    no warnings 'redefine';
    my $start_cmd = \&Apache::TestServer::start_cmd;
    *Apache::TestServer::start_cmd = sub {
        my $self = shift;
        my $cmd = $start_cmd->($self, @_);
        my $port = port($self->{config}->{vars}->{t_conf}) or return $cmd;
        my $url = "http://127.0.0.1:$port";
        # no no_proxy: nothing may exempt the receivers on 127.0.0.1
        return join ' ', 'env -u no_proxy -u NO_PROXY',
            (map { "$_=$url" } @VARS), $cmd;
    };
}

1;
