from tools.batchsim.server import main

main()
